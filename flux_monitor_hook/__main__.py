from __future__ import annotations

from flux_monitor_hook.main import main

raise SystemExit(main())
