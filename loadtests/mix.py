"""The applications of the load-test mix (loadtests/locustfile.py), kept free of Locust so that
tests can build them without gevent's monkey-patching."""

from __future__ import annotations

import itertools
import os
import random

from loadtests.customers import Customers

CUSTOMERS = Customers(int(os.environ.get("LOAD_CUSTOMERS", "100000")))
RUN = os.urandom(3).hex()
_serial = itertools.count()


def good() -> dict:
    """A new application of the next customer, submitted now."""
    n = next(_serial)
    return CUSTOMERS.application(n, f"lc{RUN}-{os.getpid()}-{n}", f"dev-{RUN}-{n}")


def fraud(rng: random.Random) -> dict:
    body = good()
    kind = rng.choice(("emulator", "spoof", "sms"))
    if kind == "emulator":
        body["device"]["is_emulator"] = True
    elif kind == "spoof":
        body["verification"]["face"]["liveness_token"] = "tok-spoof-1"
    else:
        body["verification"]["sms"]["code"] = "000000"
    return body


def contract_violation(rng: random.Random) -> dict:
    body = good()
    kind = rng.choice(("missing", "type", "unknown"))
    if kind == "missing":
        del body["loan"]
    elif kind == "type":
        body["loan"]["amount"] = "30000"
    else:
        body["bureau"]["queries_3mo"] = 1
    return body


def bad_check_digit() -> dict:
    body = good()
    number = body["applicant"]["id_number"]
    body["applicant"]["id_number"] = number[:-1] + ("1" if number[-1] != "1" else "2")
    return body
