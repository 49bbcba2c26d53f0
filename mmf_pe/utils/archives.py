"""Archive members that may be written below a destination folder, and members too big to be what they claim.

Used before anything of an archive is read (convert-hm's zips; tar members also go through tarfile's `data` filter):
a member name must stay inside the destination whatever joins it (no absolute name, drive letter, `..` component with
`/` or `\\`, NUL byte, symbolic link), and a member must not expand past its size cap or more than `max_ratio` times
its compressed size (past `ratio_floor` bytes: small files compress well and are harmless).
"""
import posixpath
import re

DRIVE_LETTER = re.compile(r"^[A-Za-z]:")
RATIO_FLOOR_BYTES = 1 << 20


def unsafe_member(name, is_symlink=False):
    """Why a member named `name` may not be written below a destination folder (None: it may)."""
    if "\x00" in name:
        return "a NUL byte in its name"
    if is_symlink:
        return "a symbolic link"
    if name.startswith(("/", "\\")):
        return "an absolute path"
    if DRIVE_LETTER.match(name):
        return "a drive letter"
    if ".." in re.split(r"[/\\]", name):
        return "a '..' component (it would leave the destination)"
    return None


def member_size_problem(name, size, compressed=None, cap=None, max_ratio=None, ratio_floor=RATIO_FLOOR_BYTES):
    """Why a member of `size` bytes (`compressed` in the archive) is refused (None: within the caps)."""
    if cap is not None and size > cap:
        kind = posixpath.splitext(name.lower())[1] or "such a"
        return f"expands to {size:,} bytes, over the {cap:,}-byte cap for a {kind} member"
    if compressed is not None and max_ratio and size > ratio_floor and size > max_ratio * max(compressed, 1):
        return (f"expands {size / max(compressed, 1):,.0f} times ({compressed:,} -> {size:,} bytes), over the "
                f"{max_ratio}:1 compression-ratio cap (a decompression bomb)")
    return None
