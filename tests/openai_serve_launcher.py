"""`transformers serve` with an API key, as vLLM's `--api-key` does it. Test support.

Run by the interpreter of `.cache/tf-serve`: `python tests/openai_serve_launcher.py KEY ARGS...`
runs `transformers serve ARGS...`, the real server, with one addition: when KEY is not `-`,
every request to /v1 without `Authorization: Bearer KEY` is answered 401 with an OpenAI-style error
body (transformers serve itself has no key option). The check wraps the server's ASGI app.
"""

from __future__ import annotations

import hmac
import json
import sys
from typing import Any

import uvicorn

Scope = dict[str, Any]


def require_key(app: Any, key: str) -> Any:
    expected = f"Bearer {key}".encode()

    async def guarded(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/v1"):  # /health stays open
            given = dict(scope.get("headers") or []).get(b"authorization", b"")
            if not hmac.compare_digest(given, expected):
                body = json.dumps(
                    {
                        "error": {
                            "message": "Invalid API key",
                            "type": "invalid_request_error",
                            "code": "invalid_api_key",
                        }
                    }
                ).encode()
                headers = [(b"content-type", b"application/json")]
                await send({"type": "http.response.start", "status": 401, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
        await app(scope, receive, send)

    return guarded


def main() -> None:
    key, args = sys.argv[1], sys.argv[2:]
    if key != "-":
        plain = uvicorn.Config

        class KeyedConfig(plain):  # type: ignore[misc, valid-type]
            def __init__(self, app: Any, *rest: Any, **kwargs: Any) -> None:
                super().__init__(require_key(app, key), *rest, **kwargs)

        uvicorn.Config = KeyedConfig  # type: ignore[misc]
    from transformers.cli.transformers import main as transformers_main

    sys.argv = ["transformers", "serve", *args]
    transformers_main()


if __name__ == "__main__":
    main()
