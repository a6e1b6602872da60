"""``actionpp studio``: parse the arguments, prepare the folders, build the page, serve it.

Offscreen rendering needs no display: VTK uses EGL (``VTK_DEFAULT_OPENGL_WINDOW=vtkEGLRenderWindow``, set here unless
the environment chose already; ``vtkOSOpenGLRenderWindow`` selects OSMesa where EGL is missing).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from . import security, workspace


def buildParser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="actionpp studio",
                                description="The curate / train / segment workflow in a browser (trame-slicer).")
    p.add_argument("--data", type=Path, default=None,
                   help="folder of volumes (+ <stem>.seg.nrrd) or an nnU-Net raw dataset; read only "
                        "(default: cardiac phantoms made in WORK/phantoms)")
    p.add_argument("--work", type=Path, default=Path("~/ACTIONpp").expanduser(),
                   help="where datasets, runs, predictions and downloads are written (default ~/ACTIONpp)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1; any other needs the access token)")
    p.add_argument("--port", type=int, default=0, help="port (default 0: a free one, printed)")
    p.add_argument("--token", default=None, help="access token (default: random when --host is not loopback)")
    p.add_argument("--engine-args", default="", metavar="FLAGS",
                   help="extra engine flags for every training, e.g. \"--patch 32 32 --channels 8 16\"")
    p.add_argument("--phantom-cases", type=int, default=6, help=argparse.SUPPRESS)
    p.add_argument("--phantom-labeled", type=int, default=2, help=argparse.SUPPRESS)
    p.add_argument("--phantom-size", type=int, nargs=3, default=None, metavar=("Z", "Y", "X"), help=argparse.SUPPRESS)
    return p


def _checkPort(port: int) -> None:
    if not 0 <= port <= 65535:
        raise workspace.WorkspaceError(f"--port: expected 0..65535, found {port}")


def build(args) -> "tuple[object, str | None]":
    """The :class:`~actionpp_studio.app.StudioApp` and the token it requires (None: loopback without token)."""
    _checkPort(args.port)
    token = security.resolveToken(args.host, args.token)
    try:
        engineArgs = shlex.split(args.engine_args)
    except ValueError as exc:
        raise workspace.WorkspaceError(f"--engine-args: expected shell-style flags, found {exc}") from None
    os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")
    try:
        from .app import StudioApp
    except ImportError as exc:
        raise workspace.WorkspaceError(f"studio: expected the web extra (make web-venv, or pip install -e "
                                       f"\".[web]\" in an environment of its own), found it missing ({exc})") from None

    folders = workspace.prepareFolders(args.data, args.work, args.phantom_cases, args.phantom_labeled,
                                       tuple(args.phantom_size) if args.phantom_size else None)
    return StudioApp(folders, token=token, engineArgs=engineArgs), token


def main(argv: list[str] | None = None) -> int:
    args = buildParser().parse_args(argv)
    try:
        app, token = build(args)
    except ValueError as exc:
        print(f"actionpp studio: error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    host = args.host

    def announce(**_):
        port = app.server.port
        print(f"ACTIONpp Studio: {security.pageUrl(host, port, token)}", flush=True)
        if not security.isLoopback(host):
            print(security.networkWarning(host), file=sys.stderr, flush=True)

    app.server.controller.on_server_ready.add(announce)
    app.server.start(host=host, port=args.port, open_browser=False, show_connection_info=False, timeout=0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
