"""The no-op baseline of the HTTP rows: a server that reads a POST body and does nothing with it.

The ledger's API has no route that accepts a POST and does nothing, so ``bench/suite.py``
serves this tiny FastAPI app with uvicorn (same worker count, same framework and server as
``consent-ledger serve``) and sends it exactly the bodies it sends the ledger, with wrk.
``POST /v1/events`` reads the whole body and answers 201 with a fixed JSON; nothing is
parsed, validated, stored or signed. What it measures is the HTTP stack alone: uvicorn,
Starlette routing, FastAPI's request handling, and wrk.

    .venv/bin/python -m uvicorn noop_app:app --app-dir bench --workers 2 --port 8001
"""

from __future__ import annotations

from fastapi import FastAPI, Request, Response

app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

ANSWER = b'{"seq":0}'


@app.post("/v1/events", status_code=201)
async def append(request: Request) -> Response:
    await request.body()
    return Response(ANSWER, status_code=201, media_type="application/json")


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}
