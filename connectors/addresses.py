"""A one-line Chinese address (a store's file, an old system's message) in
its parts: province, city, district (省市区) and the rest.

Read with ``cpca`` (chinese_province_city_area_mapper, MIT): it knows the
administrative divisions and their short names, so "广东深圳南山区科技园"
and "浙江省杭州市西湖区文三路90号" both come apart. Chosen over jionlp
(16 MB, many dependencies) and hand-written rules (the division list changes
every year); it brings pandas.

It guesses a province from a district alone ("西湖区" is in Hangzhou and in
Nanchang), and a wrong province sends a parcel to the wrong city: a part is
kept only when the text names it, or follows from a city the text names.
What is not named stays empty, and validation names exactly what is missing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

SUFFIXES = ("维吾尔自治区", "壮族自治区", "回族自治区", "自治区", "特别行政区", "省", "市")
MUNICIPAL = "市辖区"  # cpca's city for Beijing, Shanghai, Tianjin, Chongqing
MAX_LINE = 500


@dataclass(frozen=True)
class AddressParts:
    province: str | None
    city: str | None
    district: str | None
    street: str | None


def _short(name: str) -> str:
    for suffix in SUFFIXES:
        if name.endswith(suffix) and len(name) - len(suffix) >= 2:
            return name[: -len(suffix)]
    return name


def _named(name: Any, text: str) -> str | None:
    if not isinstance(name, str) or not name or (isinstance(name, float) and math.isnan(name)):
        return None
    return name if name in text or _short(name) in text else None


@lru_cache(maxsize=4096)
def split_address(line: str) -> AddressParts:
    """The parts of ``line`` the text itself names; the rest as the street."""
    text = line.strip()[:MAX_LINE]
    if not text:
        return AddressParts(None, None, None, None)
    import cpca  # type: ignore[import-untyped]  # loads its division table once, on first use

    row = cpca.transform([text]).to_dict("records")[0]
    province = _named(row.get("省"), text)
    city = row.get("市") if isinstance(row.get("市"), str) else None
    if city == MUNICIPAL:
        city = province  # 北京市 is its own city
    else:
        city = _named(city, text)
    if city and not province and isinstance(row.get("省"), str):
        province = row["省"]  # a city the text names has one province
    district = _named(row.get("区"), text) if city or province else None
    rest = row.get("地址")
    street = rest if isinstance(rest, str) and rest and (province or city) else text
    return AddressParts(province, city, district, street or None)
