"""ACTIONpp Studio: the curate / train / segment workflow in a browser (trame-slicer), a thin layer over
``ACTIONppLogic.core.ModuleLogic``, beside the Qt panel and the batch script.

Modules:
    workspace  the data folder and the work folder: loading cases into a scene, phantoms, path confinement
    security   host/token policy and the aiohttp middleware that refuses requests without the token
    app        the trame page (views, case list, train, segment, download) and its periodic poll
    server     ``actionpp studio`` argument parsing and start-up

Installed with the ``web`` extra; never imported by the engine (``actionpp.cli`` imports it lazily).
"""
