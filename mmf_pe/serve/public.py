"""What unauthenticated answers (`/v1/adapters`, `/readyz`) may show: no absolute path of the server's machine.

Load errors name files under the served folder, and feature provenance records where the training LMDB and the
detector weights lay; a client needs the adapter's name and the file's name, not the directory layout (the log
keeps the full paths for the operator).
"""
import os
import re

# an absolute POSIX path's directories: "/srv/models/served/pe/adapter_config.json" -> "adapter_config.json"
_DIRECTORIES = re.compile(r"(?<![\w.~:/-])/(?:[^\s'\"/,;:()\[\]{}<>]+/)+")


def without_paths(value, folder):
    """A copy of a JSON-like `value` with the served folder's prefix dropped (`<name>/<file>` stays) and the
    directories of any other absolute path removed (its last component stays)."""
    prefixes = sorted({os.path.join(os.path.abspath(folder), ""), os.path.join(os.path.realpath(folder), "")},
                      key=len, reverse=True)

    def text(string):
        for prefix in prefixes:
            string = string.replace(prefix, "")
        return _DIRECTORIES.sub("", string)

    def walk(item):
        if isinstance(item, str):
            return text(item)
        if isinstance(item, dict):
            return {text(k) if isinstance(k, str) else k: walk(v) for k, v in item.items()}
        if isinstance(item, (list, tuple)):
            return [walk(v) for v in item]
        return item

    return walk(value)
