"""The risk team's offline tools — backtest, funnel report, charts, model training, the German
credit converter — outside the request path's package: they import ``service``, never the reverse."""
