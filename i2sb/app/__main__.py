"""``python -m i2sb.app ckpt=...`` = ``i2sb-app ckpt=...``."""

from .main import main

main()
