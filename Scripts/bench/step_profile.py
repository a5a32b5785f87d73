"""Where the bench step's time goes: splits a sampled `perf` profile of
`lmtrain bench --data-parallel` (one process, 2 threads) by the layer that asked for the work
and by its kind (the sgemm micro-kernel, OpenBLAS's packing, zeroing, lmtrain's own loops), for
the dense and the σ-MoE step apart (Docs/performance.md). Not used by the tests.

    perf record -F 100 --call-graph dwarf,65528 -o step.data \\
        .build/release/lmtrain bench --data-parallel --steps 12 --output /tmp/step.json
    perf script -i step.data -F tid,time,ip,sym > step.txt
    python3 Scripts/bench/step_profile.py step.txt

Samples count only inside `Trainer.trainStep`. A worker thread's products carry no caller in
their stacks (the worker runs a slice of a product that the main thread split), so they are
credited to what the main thread was doing at the nearest sample; a worker waiting for work
counts as "worker idle". Attribution goes by the innermost lmtrain layer frame; Swift's
mangled names of the attention closures tell the per-(head, stream) part from the
position-score part.
"""
import bisect
import collections
import re
import sys

PER_HEAD = "attention: scores, softmax, values per (head, stream)"
POSITION = "attention: position scores and their gradients"
LAYERS = [
    ("$s6Layers16DenseFeedForward", "feedforward"),
    ("$s6Layers16MixtureOfExperts", "feedforward"),
    ("$s6Layers9LayerNorm", "layer norm"),
    ("$s6Layers7Dropout", "dropout"),
    ("$s8Training4Adam", "optimiser, clipping, gradient sums"),
    ("$s8Training16clipGradient", "optimiser, clipping, gradient sums"),
    ("$s6Tensor14ParameterArena", "optimiser, clipping, gradient sums"),
    ("$s6Layers9Embedding", "embedding and output"),
    ("$s6Layers12CrossEntropy", "embedding and output"),
    ("$s6Models18TransformerXLBlock", "residuals and copies between layers"),
    ("$s6Models13TransformerXL", "residuals and copies between layers"),
]


def read_samples(path):
    samples = []
    for block in open(path).read().split("\n\n"):
        lines = block.strip().split("\n")
        if len(lines) < 2:
            continue
        header = lines[0].split()
        frames = [line.strip().split(" ", 1)[1] if " " in line.strip() else line.strip() for line in lines[1:]]
        samples.append((float(header[1].rstrip(":")), int(header[0]), frames))
    samples.sort()
    return samples


def owner(frames):
    for frame in frames:
        if frame.startswith("$s6Layers17RelativeAttention"):
            # Closures are numbered in source order (fU_, fU0_, fU1_, ...; update these when
            # RelativeAttention.swift gains or loses one): forward's fU1_ (which calls
            # attendRows, position scores included) and backward's fU0_ run per (head,
            # stream); backward's fU1_ and fU2_ are the rest of the position part.
            if re.search(r"C7forward\w*fU1_(TA)?$|C8backward\w*fU0_(TA)?$|attendRows|recomputeProbabilities|addPositionsAndScale|softmaxBackwardRow", frame):
                return PER_HEAD
            if re.search(r"C8backward\w*fU[12]_(TA)?$", frame):
                return POSITION
            return "attention: projections and the rest"
        for prefix, name in LAYERS:
            if frame.startswith(prefix):
                return name
    return None


def kind(frames):
    leaf = frames[0]
    if leaf.startswith("sgemm_kernel"):
        return "sgemm kernel"
    if re.match(r"sgemm_(it|in|ot|on)copy", leaf):
        return "packing"
    if leaf.startswith("sgemm_beta") or "memset" in leaf:
        return "zeroing"
    if any("page_fault" in frame for frame in frames):
        return "page faults"
    return "own loops and copies"


def is_idle(frames):
    chain = " ".join(frames)
    return ("waitForRegion" in frames[0] or "startWorkers" in frames[0]
            or "sched_yield" in chain or frames[0].startswith("__schedule"))


def main(path):
    samples = read_samples(path)
    threads = collections.Counter(tid for _, tid, _ in samples).most_common(2)
    first_tid = min(t for t, _, _ in samples)
    # The main thread is the one that sampled first (it starts the process).
    main_tid = next(tid for t, tid, _ in samples if t == first_tid)
    worker_tid = next(tid for tid, _ in threads if tid != main_tid)
    main_samples = [s for s in samples if s[1] == main_tid]
    main_times = [s[0] for s in main_samples]
    moe_start = min((t for t, _, f in samples if any("MixtureOfExperts" in x for x in f)), default=float("inf"))
    for phase, (start, end) in {"dense": (0, moe_start), "σ-MoE": (moe_start, float("inf"))}.items():
        by_owner, by_kind, total = collections.Counter(), collections.Counter(), 0
        for time, tid, frames in samples:
            if not (start <= time < end) or tid not in (main_tid, worker_tid):
                continue
            if tid == worker_tid:
                i = bisect.bisect_left(main_times, time)
                nearest = min((j for j in (i - 1, i) if 0 <= j < len(main_samples)),
                              key=lambda j: abs(main_times[j] - time))
                main_frames = main_samples[nearest][2]
                if not any("trainStep" in f for f in main_frames):
                    continue
                if is_idle(frames):
                    total += 1
                    by_owner["worker idle"] += 1
                    continue
                name = owner(frames) or owner(main_frames) or "other"
            else:
                if not any("trainStep" in f for f in frames):
                    continue
                name = owner(frames) or "other"
            total += 1
            by_owner[name] += 1
            by_kind[(name, kind(frames))] += 1
        if total == 0:
            continue
        print(f"## {phase} step: {total} samples")
        for name, count in by_owner.most_common():
            print(f"  {100 * count / total:5.1f}%  {name}")
            for (owner_name, what), n in sorted(by_kind.items(), key=lambda kv: -kv[1]):
                if owner_name == name and n / total >= 0.005:
                    print(f"           {100 * n / total:5.1f}%  {what}")


if __name__ == "__main__":
    main(sys.argv[1])
