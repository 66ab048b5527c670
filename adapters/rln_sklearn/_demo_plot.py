"""The demo's figure: test error, where the importance went, which real inputs kept weight,
and where RLN's lambdas went; every panel over all repeats."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from rln_sklearn._demo import (BASELINE, HGB, L1, LABELS, NETWORKS, PLAIN, RLN, DemoResult,
                               DemoSettings, paired)

COLORS = {PLAIN: "tab:gray", L1: "tab:blue", RLN: "tab:red", HGB: "tab:green"}
MAX_NAMED_INPUTS = 20


def write_demo_figure(path: Path, result: DemoResult, settings: DemoSettings) -> Path:
    """Write a PNG of four panels (all repeats): test error per method, the share of the
    first layer's importance on real vs noise inputs, the importance of each real input
    (named), and RLN's lambdas on real vs noise inputs with Theta.

    Args:
        path: where the PNG goes (its folder must exist).
        result, settings: what `run_demo` returned and was given.

    Returns:
        `path`.
    """
    figure = Figure(figsize=(14, 10), layout="constrained")
    (error, shares), (inputs, lambdas) = figure.subplots(2, 2)
    _error_panel(error, result, settings)
    _share_panel(shares, result)
    _inputs_panel(inputs, result)
    _lambda_panel(lambdas, result, settings)
    n_noise = result.n_inputs - result.n_real
    figure.suptitle(
        f"{settings.data}: {result.n_rows} rows, {result.n_real} real inputs + {n_noise} "
        f"noise inputs; {settings.repeats} repeats x {settings.epochs} epochs, batch "
        f"{settings.batch_size}; RLN Theta {settings.avg_reg:g}, nu {settings.learning_rate:g}",
        fontsize=13)
    figure.savefig(path, dpi=100)
    return path


def _error_panel(axis, result: DemoResult, settings: DemoSettings) -> None:
    """Test loss per method: one dot per repeat, the mean +- std as a bar."""
    metric = settings.metrics[0]
    methods = [PLAIN, L1, RLN, HGB]
    rows = np.arange(len(methods))[::-1]
    for row, method in zip(rows, methods):
        values = np.asarray(result.scores[method].metrics[metric])
        mean, std = values.mean(), values.std()
        axis.barh(row, mean, xerr=std, color=COLORS[method], alpha=0.35, capsize=4)
        axis.scatter(values, np.full(len(values), row), color=COLORS[method], s=18, zorder=3)
        text = f"{mean:.3g} +- {std:.2g}"
        if settings.classification:
            accuracy = np.mean(result.scores[method].metrics["accuracy"])
            text += f"  (accuracy {accuracy:.3f})"
        axis.annotate(text, (max(mean + std, values.max()), row), xytext=(6, 0),
                      textcoords="offset points", va="center", fontsize=9)
    baseline = np.mean(result.scores[BASELINE].metrics[metric])
    axis.axvline(baseline, color="black", linestyle="--", linewidth=1,
                 label=f"{'class frequencies' if settings.classification else 'predict the mean'}"
                       f" ({baseline:.3g})")
    axis.set_yticks(rows, [LABELS[m] for m in methods])
    name = "log-loss" if settings.classification else "MSE"
    axis.set_xlabel(f"test {name} (lower is better); dots: repeats, bars: mean +- std")
    verdicts = []
    for other, short in ((L1, "best L1"), (HGB, "boosting")):
        comparison = paired(result, other, metric)
        verdicts.append(f"RLN - {short} {comparison.mean:+.2g} ({comparison.verdict})")
    axis.set_title(f"Test {name} per method ({settings.repeats} repeats)\n"
                   f"paired by repeat: {'; '.join(verdicts)}", fontsize=11)
    axis.set_xlim(0, max(baseline, axis.get_xlim()[1]) * 1.3)
    axis.legend(loc="lower right", fontsize=9)


def _share_panel(axis, result: DemoResult) -> None:
    """Per network, the share of the first layer's sum |w| on the real inputs (the rest is
    on the noise inputs), against the share an even spread would give."""
    n_real, n_inputs = result.n_real, result.n_inputs
    if n_inputs == n_real:
        axis.set_axis_off()
        axis.text(0.5, 0.5, "no noise inputs (--noise-features 0):\nevery input is real",
                  ha="center", va="center", fontsize=12, transform=axis.transAxes)
        return
    uniform = 100 * n_real / n_inputs
    rows = np.arange(len(NETWORKS))[::-1]
    highest = uniform
    for row, method in zip(rows, NETWORKS):
        shares = 100 * np.asarray(result.scores[method].real_share)
        mean = shares.mean()
        highest = max(highest, shares.max())
        axis.barh(row, mean, color=COLORS[method], alpha=0.35)
        axis.scatter(shares, np.full(len(shares), row), color=COLORS[method], s=18, zorder=3)
        axis.annotate(f"{mean:.1f}% ({mean / uniform:.1f}x even)", (shares.max(), row),
                      xytext=(6, 0), textcoords="offset points", va="center", fontsize=9)
    axis.axvline(uniform, color="black", linestyle=":", linewidth=1.5,
                 label=f"even spread: {n_real}/{n_inputs} = {uniform:.2g}%")
    axis.set_yticks(rows, [LABELS[m] for m in NETWORKS])
    axis.set_xlim(0, min(100.0, 1.5 * highest))
    axis.set_xlabel(f"% of the first layer's sum |w| on the {n_real} real inputs (dots: "
                    f"repeats)\nthe rest is on the {n_inputs - n_real} noise inputs")
    axis.set_title(f"How much of the first layer's weight is on real inputs\n"
                   f"(gradient boosting has no first layer)")
    axis.legend(loc="lower right", fontsize=9)


def _inputs_panel(axis, result: DemoResult) -> None:
    """Each real input's share of sum |w| per network (mean over repeats), named."""
    names = np.asarray(result.feature_names)
    means = {m: np.mean(result.scores[m].importances, axis=0)[result.is_real]
             for m in NETWORKS}
    order = np.argsort(-means[RLN])[:MAX_NAMED_INPUTS]
    rows = np.arange(len(order))[::-1]
    height = 0.8 / len(NETWORKS)
    for k, method in enumerate(NETWORKS):
        axis.barh(rows + (1 - k) * height, 100 * means[method][order], height=height,
                  color=COLORS[method], label=LABELS[method])
    uniform = 100 / result.n_inputs
    axis.axvline(uniform, color="black", linestyle=":", linewidth=1.5,
                 label=f"even spread: 1/{result.n_inputs} = {uniform:.2g}%")
    axis.set_yticks(rows, names[order])
    axis.set_xlabel("share of the first layer's sum |w|, % (mean over repeats)")
    shown = "" if len(order) == result.n_real else \
        f" (the {len(order)} of {result.n_real} RLN weighs most)"
    axis.set_title(f"Importance of each real input{shown}")
    axis.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=4, fontsize=9)


def _lambda_panel(axis, result: DemoResult, settings: DemoSettings) -> None:
    """Histogram of RLN's lambdas, weights of real inputs vs of noise inputs."""
    lambdas = np.stack(result.lambdas)  # (repeats, n_inputs, width)
    real = lambdas[:, result.is_real].ravel()
    noise = lambdas[:, ~result.is_real].ravel()
    low, high = np.percentile(lambdas, [0.1, 99.9])
    if not high > low:
        low, high = low - 1, high + 1
    bins = np.linspace(low, high, 81)
    real, noise = np.clip(real, low, high), np.clip(noise, low, high)
    if noise.size:
        axis.hist(noise, bins=bins, density=True, histtype="stepfilled", color="lightgray",
                  label=f"weights of noise inputs ({noise.size:,})")
    what = "weights of real inputs" if noise.size else "first-layer weights"
    axis.hist(real, bins=bins, density=True, histtype="step", color="tab:red", linewidth=2,
              label=f"{what} ({real.size:,})")
    axis.axvline(settings.avg_reg, color="black", linestyle="--",
                 label=f"Theta = {settings.avg_reg:g} (the lambdas' mean)")
    axis.set_yscale("log")
    axis.set_xlabel("lambda: log of the weight's own L1 coefficient (higher: pushed to 0 "
                    "harder;\nthe 0.2% beyond the 0.1 and 99.9 percentiles are in the end bins)")
    axis.set_ylabel("density")
    axis.set_title(f"RLN's lambdas, first layer, {settings.repeats} repeats pooled\n"
                   f"({100 * np.mean(result.scores[RLN].sparsity):.1f}% of its weights are 0)")
    axis.legend(loc="upper left", fontsize=9)
