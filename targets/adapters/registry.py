"""Which adapter puts orders into which system (``ORDERBUS_TARGETS``).

Adding a system is one module in ``targets/adapters/``, with its options model
and its adapter class, and one line here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from targets.adapters.base import TargetAdapter
from targets.adapters.chanjet import ChanjetAdapter, ChanjetOptions
from targets.adapters.jiandaoyun import JiandaoyunAdapter, JiandaoyunOptions
from targets.adapters.kingdee import KingdeeAdapter, KingdeeOptions
from targets.adapters.template import TemplateAdapter, TemplateOptions
from targets.adapters.u8 import U8Adapter, U8Options

ADAPTERS: dict[str, Callable[[dict[str, Any]], TargetAdapter]] = {
    "jiandaoyun": lambda o: JiandaoyunAdapter(JiandaoyunOptions.model_validate(o)),
    "kingdee": lambda o: KingdeeAdapter(KingdeeOptions.model_validate(o)),
    "u8": lambda o: U8Adapter(U8Options.model_validate(o)),
    "chanjet": lambda o: ChanjetAdapter(ChanjetOptions.model_validate(o)),
    "template": lambda o: TemplateAdapter(TemplateOptions.model_validate(o)),
}


def adapter_for(options: dict[str, Any]) -> TargetAdapter:
    kind = options.get("adapter")
    if kind not in ADAPTERS:
        raise ValueError(f"no target adapter {kind!r} (known: {', '.join(sorted(ADAPTERS))})")
    return ADAPTERS[str(kind)](options)
