"""Pieces more than one detector uses: SQL fingerprints (``sqlfp``), per-key rolling
baselines (``baseline``) and deploy markers (``deploys``)."""
