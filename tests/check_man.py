#!/usr/bin/env python3
"""Checks of the man pages in man/.

  check_man.py keys CONFIG_C MAN_PAGE
      Every key of the loader's table (config_keys[] in core/config.c) has an
      entry in the KEYS section of ringmx.conf(5), with a Default: line, and
      the page has no entry for a key the table does not have. A failure
      names each key and says what to do.
  check_man.py render PAGE...
      man (MANWIDTH=80, --warnings) and groff -ww render each page without a
      single warning. Exit 77 when man or groff is missing.
"""

import os
import re
import shutil
import subprocess
import sys

SKIP_EXIT = 77
TABLE_START_RE = re.compile(r"^static const struct config_key config_keys\[\] = \{\s*$")
TABLE_ROW_RE = re.compile(r'^\s*\{\s*"([A-Za-z0-9_]+)"\s*,')
TIMEOUT_S = 60


def table_keys(config_c):
    """The key names in config_keys[], in table order."""
    with open(config_c, encoding="utf-8") as f:
        lines = f.read().splitlines()
    keys, inside = [], False
    for line in lines:
        if not inside:
            inside = bool(TABLE_START_RE.match(line))
            continue
        if line.startswith("};"):
            break
        m = TABLE_ROW_RE.match(line)
        if m:
            keys.append(m.group(1))
    return keys


def page_entries(man_page):
    """{key: entry text} for each `.TP` / `.B key` entry under `.SH KEYS`."""
    with open(man_page, encoding="utf-8") as f:
        lines = f.read().splitlines()
    entries, section, current = {}, None, None
    for i, line in enumerate(lines):
        if line.startswith(".SH "):
            section, current = line[4:].strip().strip('"'), None
            continue
        if section != "KEYS":
            continue
        if line == ".TP" and i + 1 < len(lines) and lines[i + 1].startswith(".B "):
            current = lines[i + 1][3:].strip().replace("\\-", "-")
            entries[current] = ""
            continue
        if line.startswith(".SS "):
            current = None
        elif current is not None:
            entries[current] += line + "\n"
    return entries


def check_keys(config_c, man_page):
    keys = table_keys(config_c)
    if len(keys) < 10:
        print("check_man: found only %d keys in %s: has the shape of config_keys[] "
              "changed? update TABLE_START_RE/TABLE_ROW_RE in %s"
              % (len(keys), config_c, __file__))
        return 1
    entries = page_entries(man_page)
    problems = []
    for key in keys:
        if key not in entries:
            problems.append("key '%s' is in config_keys[] (%s) but not in %s: add a "
                            "'.TP' / '.B %s' entry with its unit and 'Default:' under "
                            ".SH KEYS" % (key, config_c, man_page, key))
        elif "Default:" not in entries[key]:
            problems.append("key '%s' in %s has no 'Default:' line" % (key, man_page))
    for key in entries:
        if key not in keys:
            problems.append("key '%s' is in %s but not in config_keys[] (%s): remove "
                            "its entry, or add the key to the table"
                            % (key, man_page, config_c))
    for p in problems:
        print("check_man: " + p)
    if problems:
        return 1
    print("check_man: %d keys, each in %s with a default" % (len(keys), man_page))
    return 0


def check_render(pages):
    man, groff = shutil.which("man"), shutil.which("groff")
    if not man or not groff:
        print("skip: man or groff is missing (Debian's man-db and groff-base)")
        return SKIP_EXIT
    env = dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8")
    failed = 0
    for page in pages:
        page_failed = False
        runs = (([man, "--warnings", "-l", page], "man --warnings"),
                ([groff, "-ww", "-z", "-man", page], "groff -ww -z"))
        for argv, what in runs:
            p = subprocess.run(argv, env=env, capture_output=True, timeout=TIMEOUT_S)
            if p.returncode != 0 or p.stderr.strip():
                print("check_man: %s %s: exit %d\n%s"
                      % (what, page, p.returncode, p.stderr.decode(errors="replace")))
                page_failed = True
        if page_failed:
            failed = 1
        else:
            print("check_man: %s renders without warnings" % page)
    return failed


def main(argv):
    if len(argv) == 4 and argv[1] == "keys":
        return check_keys(argv[2], argv[3])
    if len(argv) >= 3 and argv[1] == "render":
        return check_render(argv[2:])
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
