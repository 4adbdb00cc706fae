"""Model plumbing shared by the scorers: device/dtype choice, offline loading once per process,
length-bucketed batching with parallel tokenization.

Nothing here imports torch at package import time; each module does.
"""
