"""The ``--flags`` of the argparse ``i2sb-eval`` (before it took ``key=value``) translated into its keys, so
existing scripts keep working; the caller prints one deprecation line."""

from __future__ import annotations

from .usage import UsageError

VALUE_FLAGS = {  # --flag VALUE (or --flag=VALUE) -> key
    "--fid-ref": "fid_ref",
    "--labels": "labels",
    "--inception": "inception",
    "--resnet": "resnet",
    "--lpips-net": "lpips_net",
    "--lpips-weights": "lpips_weights",
    "--json": "json",
    "--device": "device",
    "--batch-size": "batch_size",
}
SWITCHES = {  # --flag -> key=value
    "--no-fid": "fid=false",
    "--no-lpips": "lpips=false",
    "--no-json": "json=false",
    "--per-image": "per_image=true",
}


def translate_flags(argv: list[str]) -> tuple[list[str], list[str]]:
    """``argv`` with the old flags replaced by ``key=value``; also returns the ``key=value`` words written.

    Bare words (the folders), ``key=value``, ``-h``/``--help`` and unknown options pass through unchanged (the
    parser reports the unknown ones). A value flag without its value is a :class:`UsageError`.
    """
    out, written = [], []
    words = iter(argv)
    for word in words:
        flag, has_value, value = word.partition("=")
        if word in SWITCHES:
            written.append(SWITCHES[word])
        elif flag in VALUE_FLAGS:
            if not has_value:
                value = next(words, None)
                if value is None:
                    raise UsageError(f"{flag} needs a value; write {VALUE_FLAGS[flag]}=VALUE")
            written.append(f"{VALUE_FLAGS[flag]}={value}")
        else:
            out.append(word)
            continue
        out.append(written[-1])
    return out, written
