"""Side-by-side benchmark of segment_lite and the reference client (segment-analytics-python 2.x).

Run ``python -m benchmarks.run`` (``--quick`` for a short run); see docs/performance.md.

Modules:

* ``sink``     - the loopback Tracking API sink, run in its own process;
* ``workload`` - the track message both clients send, and how each client is built;
* ``worker``   - one measured run of one client, in a fresh process;
* ``run``      - the driver: alternates the clients, takes medians, prints and saves the report;
* ``report``   - medians, ratios, targets and the table;
* ``profile``  - profiles segment_lite's hot path (cProfile) on the same workload.
"""
