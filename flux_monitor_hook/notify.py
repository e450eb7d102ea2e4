"""Notifications when a background follower ends: a desktop notification and a webhook (JSON POST)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from typing import Any

from flux_monitor_hook.config import NotifyConfig
from flux_monitor_hook.git_urls import redact_text

_ICONS = {'succeeded': '✅', 'no-sources': '✅', 'failed': '❌', 'timeout': '⏱', 'error': '⚠'}


def headline(record: dict[str, Any]) -> str:
    sha = str(record.get('sha') or record.get('revision') or '')[:7]
    result = str(record.get('result', ''))
    text = f'{_ICONS.get(result, "•")} flux-monitor: {record.get("branch")} {sha} {result}'
    failed = [f'{r["kind"]}/{r["namespace"]}/{r["name"]}' for r in record.get('resources') or []
              if r.get('state') in ('failed', 'blocked')]
    if failed:
        text += ': ' + ', '.join(failed[:5])
    elif record.get('message'):
        text += f': {record["message"]}'
    return redact_text(text)


def _desktop(title: str, body: str) -> bool:
    if sys.platform == 'darwin' and shutil.which('osascript'):
        script = f'display notification {json.dumps(body)} with title {json.dumps(title)}'
        command = ['osascript', '-e', script]
    elif shutil.which('notify-send') and (os.environ.get('DISPLAY') or os.environ.get('WAYLAND_DISPLAY')):
        command = ['notify-send', '--app-name=flux-monitor', title, body]
    else:
        return False
    try:
        return subprocess.run(command, capture_output=True, timeout=10, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _webhook(url: str, record: dict[str, Any], text: str) -> str | None:
    body = json.dumps({'text': text, 'summary': record}).encode()
    request = urllib.request.Request(url, data=body, method='POST',
                                     headers={'Content-Type': 'application/json', 'User-Agent': 'flux-monitor'})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()
    except (urllib.error.URLError, OSError, ValueError) as error:
        return redact_text(f'webhook failed: {error}')
    return None


def notify(config: NotifyConfig, record: dict[str, Any], *, has_terminal: bool) -> list[str]:
    """Send what the configuration asks for; a desktop notification also when nobody saw a terminal.
    Returns what went wrong, for the follower's log."""
    problems = []
    text = headline(record)
    if config.desktop or not has_terminal:
        sent = _desktop('flux-monitor', text)
        if config.desktop and not sent:
            problems.append('no desktop notification service (notify-send or osascript) is available')
    if config.webhook:
        problem = _webhook(config.webhook, record, text)
        if problem:
            problems.append(problem)
    return problems
