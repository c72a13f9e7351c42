"""skydriver — IceCube-style skymap scans as a service.

REST + MongoDB, the scan starter and watchdog, the per-scan scanner server, the reconstructions
pilots run, and the science core underneath (docs/skydriver.md, docs/science.md).
"""
