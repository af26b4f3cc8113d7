"""TensorBoard's own entry point, as :mod:`.tensorboard` starts it: arguments from a pipe, fonts relative.

Run in the TensorBoard process (``python -c``, see :data:`.tensorboard.LAUNCHER`),
so it imports nothing of ClusterLab but this file.

- Its arguments come from the first line of standard input (a JSON list), never
  argv, which ``ps`` shows to everyone: they hold the private path prefix.
- Its page (``index.html`` of ``webfiles.zip``) names its fonts from the root
  of the site, ``url(/font-roboto/…)``, not relative to itself as it names its
  script. Behind a path prefix (ours, the server's ``proxy/<port>/``, the hub's
  ``/user/<name>/``) that root is the hub's: every load asked the hub for four
  ``/hub/font-roboto/*.woff2`` and got 404. The page it serves here names them
  ``url(font-roboto/…)``, which resolves under the prefix, where TensorBoard
  serves them.
"""

from __future__ import annotations

import io
import json
import sys
import zipfile

ROOT_FONTS, RELATIVE_FONTS = b"url(/font-roboto/", b"url(font-roboto/"


def relative_fonts(index_html: bytes) -> bytes:
    """TensorBoard's page with its font URLs relative to the page."""
    return index_html.replace(ROOT_FONTS, RELATIVE_FONTS)


def with_relative_fonts(assets_zip_provider):
    """A TensorBoard assets provider: the same archive, its ``index.html`` through :func:`relative_fonts`."""

    def provide():
        copy = io.BytesIO()
        with assets_zip_provider() as original_file, zipfile.ZipFile(original_file) as original, \
                zipfile.ZipFile(copy, "w", zipfile.ZIP_STORED) as rewritten:  # TensorBoard gzips each itself
            for info in original.infolist():
                content = original.read(info)
                if info.filename == "index.html":
                    content = relative_fonts(content)
                rewritten.writestr(info.filename, content)
        copy.seek(0)
        return copy

    return provide


def main() -> None:
    sys.argv = ["tensorboard", *json.loads(sys.stdin.readline())]
    sys.stdin.close()
    from tensorboard import assets
    from tensorboard.main import run_main

    # TensorBoard's own start, with its default web files read through with_relative_fonts
    default_provider = assets.get_default_assets_zip_provider
    assets.get_default_assets_zip_provider = lambda: (
        None if (provider := default_provider()) is None else with_relative_fonts(provider))
    run_main()


if __name__ == "__main__":
    main()
