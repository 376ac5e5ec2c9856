"""The no-op model of ``serve_noop.py``, served by PyTriton or by a bare Starlette app.

    PYTHON noop_servers.py triton PORT WORKSPACE     # in the PyTriton venv
    PYTHON noop_servers.py starlette PORT

The model is ``noop``: identity on an FP32 tensor ``input`` of shape [-1, 4], answered
as ``output``. This file imports only the standard library at the top, because the
Triton role runs in PyTriton's venv (a shared-library CPython 3.12) that has neither
qosbatch nor this repository's packages; each role imports its server inside.
"""

from __future__ import annotations

import json
import signal
import sys
from types import FrameType

MODEL = "noop"
INFER_PATH = f"/v2/models/{MODEL}/infer"
READY_PATH = "/v2/health/ready"
MAX_BATCH = 32
MAX_QUEUE_DELAY_US = 2000


def serve_triton(port: int, workspace: str) -> None:
    """PyTriton's ``noop``: Triton's dynamic batcher in front of an identity function.

    Runs in the PyTriton venv (Python 3.12), so it imports only what that venv has.
    gRPC and metrics are off: only HTTP is measured, and fewer ports means fewer clashes.
    """
    import numpy as np
    from pytriton.decorators import batch
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
    from pytriton.triton import Triton, TritonConfig

    @batch
    def infer(**inputs: np.ndarray) -> dict[str, np.ndarray]:
        return {"output": inputs["input"]}

    def interrupt(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt  # serve() stops Triton in order on this, and on nothing else

    signal.signal(signal.SIGTERM, interrupt)

    config = TritonConfig(
        http_address="127.0.0.1",
        http_port=port,
        allow_grpc=False,
        allow_metrics=False,
        exit_timeout_secs=5,
    )
    with Triton(config=config, workspace=workspace) as triton:
        triton.bind(
            model_name=MODEL,
            infer_func=infer,
            inputs=[Tensor(name="input", dtype=np.float32, shape=(4,))],
            outputs=[Tensor(name="output", dtype=np.float32, shape=(4,))],
            config=ModelConfig(
                max_batch_size=MAX_BATCH,
                batcher=DynamicBatcher(max_queue_delay_microseconds=MAX_QUEUE_DELAY_US),
            ),
        )
        triton.serve()


def serve_starlette(port: int) -> None:
    """The ceiling: parse the v2 request, echo its data as a fixed [1, 4] FP32 output.

    No batching, no model, no thread hop: what is left is uvicorn, Starlette and JSON.
    """
    import uvicorn
    from starlette import __version__ as starlette_version
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    async def infer(request: Request) -> Response:
        data = json.loads(await request.body())["inputs"][0]["data"]
        return JSONResponse(
            {
                "model_name": MODEL,
                "model_version": "1",
                "outputs": [{"name": "output", "datatype": "FP32", "shape": [1, 4], "data": data}],
            }
        )

    async def ready(_request: Request) -> Response:
        return Response(status_code=200)

    async def meta(_request: Request) -> Response:
        return JSONResponse(
            {
                "name": "starlette-echo",
                "version": f"starlette {starlette_version} uvicorn {uvicorn.__version__}",
            }
        )

    app = Starlette(
        routes=[
            Route(INFER_PATH, infer, methods=["POST"]),
            Route(READY_PATH, ready),
            Route("/v2", meta),
        ]
    )
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def main(argv: list[str]) -> int:
    if argv[:1] == ["triton"] and len(argv) == 3:
        serve_triton(int(argv[1]), argv[2])
    elif argv[:1] == ["starlette"] and len(argv) == 2:
        serve_starlette(int(argv[1]))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
