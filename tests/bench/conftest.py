# The benchmarks are run by `python tests/bench/run.py`, never by pytest: nothing here is a test.
collect_ignore_glob = ["*.py"]
