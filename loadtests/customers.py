"""Synthetic pre-approved customers for load tests: distinct ID numbers (aged about 50, valid
check digits), phones and IPv4 addresses, the whitelist CSV that pre-approves them, and a new
application of any of them."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from service.identifiers import CHINA
from tests.factories import application, id_number

BORN = dt.date(1976, 1, 1)  # eligible for every product by age
PER_DAY = 990  # sequence numbers 000-989: the simulator reads 998/999 as mismatch/not found


class Customers:
    def __init__(self, count: int) -> None:
        self.count = count
        self.ids = [id_number((BORN + dt.timedelta(days=i // PER_DAY)).strftime("%Y%m%d"), "110105",
                              f"{i % PER_DAY:03d}") for i in range(count)]

    def customer(self, i: int) -> tuple[str, str, str]:
        """(ID number, phone, IP) of customer ``i`` (modulo the population)."""
        i %= self.count
        return self.ids[i], f"139{i:08d}", f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"

    def application(self, i: int, application_id: str, device_id: str) -> dict[str, Any]:
        """A good application of customer ``i`` from its own device, submitted now."""
        number, phone, ip = self.customer(i)
        now = dt.datetime.now(CHINA)
        return application(application_id, applicant={"id_number": number, "phone": phone},
                           device={"device_id": device_id, "ip": ip}, submitted_at=now.isoformat(),
                           consents={"e_signature": {"signed_at": (now - dt.timedelta(seconds=20)).isoformat()}})

    def whitelist_csv(self, path: Path) -> Path:
        with Path(path).open("w") as out:
            out.write("id_number,segment,limit,rate_tier,valid_until\n")
            out.writelines(f"{number},consumer,50000,T2,2027-06-30\n" for number in self.ids)
        return Path(path)
