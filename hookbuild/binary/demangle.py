"""C++ names: libstdc++'s own demangler (exact and fast) and the function name a signature belongs to."""

from __future__ import annotations

from collections.abc import Callable

from hookbuild.errors import SymbolError


def demangler() -> Callable[[str], str]:
    """`__cxa_demangle` of libstdc++ through ctypes, loaded by soname (cxxfilt's import runs ldconfig)."""
    import ctypes

    try:
        libcxx = ctypes.CDLL("libstdc++.so.6")
    except OSError:
        import ctypes.util

        found = ctypes.util.find_library("stdc++") or ctypes.util.find_library("c++")
        if found is None:
            hint = "apt-get install libstdc++6"
            raise SymbolError("cannot load libstdc++ to demangle names", hint=hint) from None
        libcxx = ctypes.CDLL(found)
    cxa_demangle = libcxx.__cxa_demangle
    cxa_demangle.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.POINTER(ctypes.c_int)]
    cxa_demangle.restype = ctypes.c_void_p
    free = ctypes.CDLL(None).free
    free.argtypes = [ctypes.c_void_p]
    free.restype = None
    status = ctypes.c_int()

    def demangle(name: str) -> str:
        base, dot, suffix = name.partition(".")  # GCC clones: foo.constprop.0, foo.cold
        text = base
        if base.startswith("_Z"):  # external C++ names only, like c++filt
            out = cxa_demangle(base.encode(), None, None, ctypes.byref(status))
            if not out:  # not a valid mangled name (status -2) or out of memory
                return name
            try:
                text = ctypes.string_at(out).decode("utf-8", "replace")
            finally:
                free(out)
            if status.value != 0:
                return name
        return f"{text} [clone .{suffix}]" if dot else text

    return demangle


def function_name(demangled: str) -> str:
    """`Envoy::Http::hookpointDecode(int) const` -> `Envoy::Http::hookpointDecode` (templates kept)."""
    text = demangled.split(" [clone ", 1)[0]
    end = len(text)
    # Drop the parameter list: the last top-level "(...)" and any cv/ref qualifiers after it.
    depth, close = 0, -1
    for i in range(end - 1, -1, -1):
        char = text[i]
        if char == ")":
            if depth == 0:
                close = i
            depth += 1
        elif char == "(":
            depth -= 1
            if depth == 0 and close != -1:
                text = text[:i]
                break
    # Drop a return type (function templates spell it): the part before the last top-level space.
    depth = 0
    for i in range(len(text) - 1, -1, -1):
        char = text[i]
        if char in ">)":
            depth += 1
        elif char in "<(":
            depth -= 1
        elif char == " " and depth == 0 and not text[:i].endswith("operator"):
            return text[i + 1 :]
    return text
