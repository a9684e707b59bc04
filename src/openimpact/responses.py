"""JSON responses rendered by orjson.

Starlette's JSONResponse renders with the standard library, which took about
a millisecond and a half of a 1000-record page (issue 4). orjson writes the
same compact UTF-8 JSON for the dicts, lists, strings, integers and booleans
that the API returns. (FastAPI's own ORJSONResponse is deprecated in favour of
response models, which these hand-built, absence-preserving bodies are not.)
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.responses import JSONResponse


class FastJSONResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)
