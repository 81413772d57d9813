"""Synthetic pre-approved customers for load tests: distinct ID numbers (aged about 50, valid
check digits), phones and IPv4 addresses, and the whitelist CSV that pre-approves them."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from stdnum.cn import ric

BORN = dt.date(1976, 1, 1)  # eligible for every product by age


PER_DAY = 990  # sequence numbers 000-989: the simulator reads 998/999 as mismatch/not found


def id_number(i: int) -> str:
    body = "110105" + (BORN + dt.timedelta(days=i // PER_DAY)).strftime("%Y%m%d") + f"{i % PER_DAY:03d}"
    return body + ric.calc_check_digit(body + "0")


class Customers:
    def __init__(self, count: int) -> None:
        self.count = count
        self.ids = [id_number(i) for i in range(count)]

    def customer(self, i: int) -> tuple[str, str, str]:
        """(ID number, phone, IP) of customer ``i`` (modulo the population)."""
        i %= self.count
        return self.ids[i], f"139{i:08d}", f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"

    def whitelist_csv(self, path: Path) -> Path:
        with Path(path).open("w") as out:
            out.write("id_number,segment,limit,rate_tier,valid_until\n")
            out.writelines(f"{number},consumer,50000,T2,2027-06-30\n" for number in self.ids)
        return Path(path)
