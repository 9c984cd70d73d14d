"""``i2sb-app``: restore photos in the browser (Gradio), with the bits ``i2sb-sample`` writes.

* :mod:`.models`  -- the configured checkpoints, loaded once, named and described for the page;
* :mod:`.restore` -- the Restore button without any web framework: photos read, seeded and written as
  ``i2sb-sample`` does (:mod:`i2sb.restoration.inputs`), one line per photo that fails;
* :mod:`.page`    -- the Gradio page and its ``/restore`` API endpoint;
* :mod:`.main`    -- the command line (``key=value``), safe defaults (127.0.0.1, a queue of one).
"""
