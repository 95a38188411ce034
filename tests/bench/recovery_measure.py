"""Real-time delivery recovery: a webhook target answers 503 for OUTAGE seconds while 3
incidents are queued, then comes back; prints how long after that all were delivered.

    PYTHONPATH=. python tests/bench/recovery_measure.py 40
"""
import sys, time, tempfile, random
sys.path.insert(0, "tests/sinks"); sys.path.insert(0, ".")
import targets
from agent.clock import Clock
from agent.incidents import Deliverer, IncidentManager, IncidentStore
from agent.sinks import build_sink
outage = float(sys.argv[1])
hook = targets.start_target("webhook"); hook.forced = (503, {})
clock = Clock(); d = tempfile.mkdtemp()
store = IncidentStore(d, clock)
m = IncidentManager(store, clock, ["hook"], host="web-1")
dl = Deliverer(store, {"hook": build_sink("webhook", "hook", {"url": hook.url + "/in"}, clock=clock)}, clock)
start = time.monotonic(); n = 0
while time.monotonic() - start < outage:
    if n < 3 and time.monotonic() - start >= n * outage / 4:
        m.observe([targets.make_finding(subject={"endpoint": f"C{n}#x"})]); n += 1
    dl.run_once(); time.sleep(0.5)
hook.forced = None; back = time.monotonic()
while store.outbox_for(pending_only=True):
    dl.run_once(); time.sleep(0.5)
print(f"outage {outage:.0f} s, 3 incidents queued: all delivered {time.monotonic()-back:.2f} s after the sink came back; received {len(hook.received)} (distinct {len({r.json['incident']['id'] for r in hook.received})})")
