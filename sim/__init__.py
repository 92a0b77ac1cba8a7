"""Hypereal's upstream simulator: a real HTTP server that speaks OpenAI, Anthropic, Gemini, fal, RunPod and
Fish Audio exactly, with real media bytes made on the CPU (``sim.media``).

Run it with ``python -m sim --port 9100`` (or SIM_HOST / SIM_PORT); the ASGI app is ``sim.app:app``.
Routes, auth and directives are described in ``sim.app``; deterministic replies and token counting
(importable by tests to compute expected values) in ``sim.text`` and ``sim.plan``; asynchronous jobs, their
clock and webhooks in ``sim.jobs``, ``sim.clock`` and ``sim.webhooks``.
"""
