"""Where an ID number's province is: the first two digits → the provincial capital's coordinates.

A capital stands in for a whole province, so distances are rough (Xinjiang spans 2,000 km); rules
use them for flags and referrals with wide thresholds, never alone for a decline.
"""

from __future__ import annotations

from service.engine.functions import distance_km

CAPITALS: dict[str, tuple[float, float]] = {
    "11": (39.90, 116.41), "12": (39.13, 117.20), "13": (38.04, 114.51), "14": (37.87, 112.55),
    "15": (40.84, 111.75), "21": (41.80, 123.43), "22": (43.82, 125.32), "23": (45.80, 126.53),
    "31": (31.23, 121.47), "32": (32.06, 118.80), "33": (30.27, 120.16), "34": (31.82, 117.23),
    "35": (26.07, 119.30), "36": (28.68, 115.86), "37": (36.65, 117.12), "41": (34.75, 113.62),
    "42": (30.59, 114.31), "43": (28.23, 112.94), "44": (23.13, 113.26), "45": (22.82, 108.37),
    "46": (20.04, 110.20), "50": (29.56, 106.55), "51": (30.57, 104.07), "52": (26.65, 106.63),
    "53": (25.04, 102.71), "54": (29.65, 91.17), "61": (34.34, 108.94), "62": (36.06, 103.83),
    "63": (36.62, 101.78), "64": (38.49, 106.23), "65": (43.83, 87.62),
}


def km_from_province(province: str, lat: float | None, lon: float | None) -> float | None:
    capital = CAPITALS.get(province)
    if capital is None or lat is None or lon is None:
        return None
    return distance_km(capital[0], capital[1], lat, lon)
