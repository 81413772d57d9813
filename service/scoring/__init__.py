"""Credit scoring: model registry, feature mapping, PD → points → grade."""
