"""The backtest report's plots draw Chinese labels with glyphs, not empty boxes."""

import io
import warnings

import matplotlib

from geo.i18n import use_locale
from predict.report import TEXT, _font_family


def test_chinese_labels_are_drawn_with_a_cjk_font():
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    family = _font_family()
    assert family[0] != "DejaVu Sans", "no CJK font installed (scripts/setup.sh installs one)"
    with use_locale("zh"), warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib warns "Glyph ... missing from font(s)"
        with matplotlib.rc_context({"font.family": "sans-serif", "font.sans-serif": family}):
            fig, ax = plt.subplots()
            ax.set(title=str(TEXT["calibration"]), xlabel=str(TEXT["days"]))
            ax.plot([1, 2], [1, 2], label=str(TEXT["persistence"]))
            ax.legend()
            fig.savefig(io.BytesIO(), format="png")
            plt.close(fig)
    with use_locale("zh"):
        assert str(TEXT["days"]) != "days ahead"  # the labels drawn were Chinese
