"""Locust load test with a realistic mix of traffic for POST /v1/decisions.

Per 100 requests, roughly: 80 good applications of distinct pre-approved customers, 7 fraud
(an emulator, a spoofed face, a wrong SMS code), 5 invalid (3 that fail the contract: 422; 2
with a broken ID check digit: declined by validation), 8 duplicates (6 retries of an answered
application: the stored answer; 2 reuses of an application id with another body: 409). Every
answer is checked: a status the mix did not expect is a failure.

For approvals, whitelist the customers first (the service's data folder):

    .venv/bin/python loadtests/locustfile.py whitelist /tmp/customers.csv
    LOAN_DATA_DIR=var .venv/bin/loan-decision whitelist import /tmp/customers.csv

then, against a service on loopback (only ever loopback):

    .venv/bin/locust -f loadtests/locustfile.py --host http://127.0.0.1:8000 --headless -u 50 -r 10 -t 1m
"""

from __future__ import annotations

import copy
import random
import sys
from pathlib import Path

import orjson
from locust import FastHttpUser, constant_throughput, task

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loadtests.mix import CUSTOMERS, bad_check_digit, contract_violation, fraud, good  # noqa: E402
from tests.factories import CLIENT  # noqa: E402


class MobileBankingBackend(FastHttpUser):
    """One backend connection posting applications, about 10 a second at most."""

    wait_time = constant_throughput(10)

    def on_start(self) -> None:
        self.rng = random.Random()
        self.answered: list[bytes] = []  # bodies already answered, for retries

    def post(self, name: str, body: bytes, expected: tuple[int, ...]) -> None:
        with self.client.post("/v1/decisions", data=body, headers=CLIENT, name=name,
                              catch_response=True) as response:
            if response.status_code not in expected:
                response.failure(f"{name}: status {response.status_code}, expected {expected}")
                return
            response.success()  # a 409 or 422 the mix asked for is a success
            if name == "good":
                self.answered = (self.answered + [body])[-50:]

    @task(80)
    def good_application(self) -> None:
        self.post("good", orjson.dumps(good()), (200,))

    @task(7)
    def fraud_application(self) -> None:
        self.post("fraud", orjson.dumps(fraud(self.rng)), (200,))

    @task(3)
    def invalid_application(self) -> None:
        self.post("invalid (422)", orjson.dumps(contract_violation(self.rng)), (422,))

    @task(2)
    def broken_id_number(self) -> None:
        self.post("broken id number", orjson.dumps(bad_check_digit()), (200,))

    @task(6)
    def retry(self) -> None:
        if self.answered:
            self.post("retry (stored answer)", self.rng.choice(self.answered), (200,))

    @task(2)
    def reused_id(self) -> None:
        if self.answered:
            body = copy.deepcopy(orjson.loads(self.rng.choice(self.answered)))
            body["loan"]["amount"] += 100
            self.post("reused id (409)", orjson.dumps(body), (409,))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "whitelist":
        print(f"{CUSTOMERS.whitelist_csv(Path(sys.argv[2]))}: {CUSTOMERS.count:,} customers")
    else:
        print(__doc__)
