"""Small helpers every layer may use (imports nothing else of i2sb).

* :mod:`.files`     -- the one atomic file writer (temporary file + rename), JSON output, leftover cleanup
* :mod:`.torchfile` -- ``torch.save`` through the atomic writer, ``torch.load(weights_only=True)`` with one-line errors
* :mod:`.loaderrors` -- why a checkpoint or pickle did not load, as one line (never "use weights_only=False")
* :mod:`.images`    -- the one image lister / reader / writer (float32 (3, H, W) in [-1, 1])
* :mod:`.device`    -- the one device resolver (``auto`` -> cuda, then mps, then cpu)
* :mod:`.seeds`     -- the one seed mixer (independent streams from tuples of integers)
"""
