"""What an operator watches: the Prometheus metrics every process records (:mod:`.metrics`),
the readings taken from the database when they are scraped (:mod:`.database_gauges`), and
whether a process is ready to serve (:mod:`.readiness`).

The metric objects live here, in the core, so that the sync engine, the IDLE watchers and the
token refreshes record them whatever process runs them (the API server today, a sync worker
later); the HTTP and GraphQL instrumentation and the ``/metrics`` route are the web layer's.

May import: the shared modules and :mod:`..db`.
"""
