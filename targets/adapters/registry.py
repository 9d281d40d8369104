"""Which adapter puts orders into which system (``ORDERBUS_TARGETS``).

Adding a system is one module in ``targets/adapters/``, with its options model
and its adapter class, and one line here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from targets.adapters.base import TargetAdapter
from targets.adapters.chanjet import ChanjetAdapter, ChanjetOptions
from targets.adapters.jiandaoyun import JiandaoyunAdapter, JiandaoyunOptions
from targets.adapters.kingdee import KingdeeAdapter, KingdeeOptions
from targets.adapters.template import TemplateAdapter, TemplateOptions
from targets.adapters.u8 import U8Adapter, U8Options
from targets.adapters.xingchen import XingchenAdapter, XingchenOptions

# name -> (its options model, the adapter made from them)
ADAPTERS: dict[str, tuple[type[BaseModel], Callable[[Any], TargetAdapter]]] = {
    "jiandaoyun": (JiandaoyunOptions, JiandaoyunAdapter),
    "kingdee": (KingdeeOptions, KingdeeAdapter),
    "u8": (U8Options, U8Adapter),
    "chanjet": (ChanjetOptions, ChanjetAdapter),
    "xingchen": (XingchenOptions, XingchenAdapter),
    "template": (TemplateOptions, TemplateAdapter),
}


def adapter_for(options: dict[str, Any]) -> TargetAdapter:
    kind = options.get("adapter")
    if kind not in ADAPTERS:
        raise ValueError(f"no target adapter {kind!r} (known: {', '.join(sorted(ADAPTERS))})")
    model, make = ADAPTERS[str(kind)]
    return make(model.model_validate(options))
