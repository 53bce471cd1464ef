"""Score every answer of a question from one pass over their shared context.

lm-eval's HFLM runs context + answer through the model again for every choice; it reuses one
forward pass only when every answer is a single token (lm-eval issue #1351 asks for prefix
reuse; still open in 0.4.13). Here the context runs once, keeping its key/value cache and only
its last position's logits (which score each answer's first token); the cache is repeated over
the choices and all answers' remaining tokens run in one batched pass, right-padded under an
attention mask. The log-probabilities and the greedy check are HFLM's, per request.

Requests whose context and answer do not fit in the model's window (HFLM would cut the context
from the left, differently per answer) and contexts with a single answer (rolling perplexity
windows) go through HFLM's own path unchanged, and so do models with bitsandbytes layers: on a
CPU with AVX512-BF16, bitsandbytes repacks their weights for a bf16 kernel whose tiling depends
on the number of rows, so a row's result depends on what else is in the batch (HFLM's own scores
of an nf4 model move by up to 0.09 nats between batch sizes 1 and 4 here); regrouping the rows
would move them further, so those models are scored as HFLM scores them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

Request = tuple[tuple[str, str] | None, list[int], list[int]]  # lm-eval's (strings, ctx ids, cont ids)


def rows_independent(model) -> bool:
    """Whether each row's result is independent of the other rows computed with it (up to float
    rounding): not so for bitsandbytes layers (see the module docstring)."""
    return not any(type(m).__module__.startswith("bitsandbytes") for m in model.modules())


def split_shared(requests: Sequence[Request], max_length: int) -> tuple[list[list[int]], list[int]]:
    """Indices of the requests grouped by identical context (groups of two or more that fit the
    window), and the indices of the rest, for HFLM's own path."""
    by_context: dict[tuple[int, ...], list[int]] = {}
    for index, (_, context, _) in enumerate(requests):
        by_context.setdefault(tuple(context), []).append(index)
    groups, rest = [], []
    for context, indices in by_context.items():
        longest = max(len(requests[i][2]) for i in indices)
        if len(indices) > 1 and len(context) + longest <= max_length + 1:
            groups.append(indices)
        else:
            rest += indices
    return groups, rest


def batches(groups: list[list[int]], requests: Sequence[Request], batch_size: int) -> list[list[list[int]]]:
    """The groups, longest context first (so memory peaks early and neighbours pad little), in
    batches of `batch_size` contexts: a batch is one pass over `batch_size` sequences, as in
    HFLM, and one more over their answers' tokens alone."""
    ordered = sorted(groups, key=lambda g: -len(requests[g[0]][1]))
    return [ordered[i:i + batch_size] for i in range(0, len(ordered), batch_size)]


@torch.no_grad()
def score_shared(model, contexts: list[list[int]], continuations: list[list[list[int]]], device,
                 softmax_dtype=None) -> list[list[tuple[float, bool]]]:
    """For each context, (sum of log-probabilities, whether greedy decoding gives it) of each of
    its continuations, from one pass over the contexts (left-padded, so every context's last
    logits sit at the last position) and one batched pass over all continuations."""
    width = max(len(c) for c in contexts)
    ids = torch.zeros(len(contexts), width, dtype=torch.long, device=device)
    context_mask = torch.zeros(len(contexts), width, dtype=torch.long, device=device)
    for row, context in enumerate(contexts):
        ids[row, width - len(context):] = torch.tensor(context, device=device)
        context_mask[row, width - len(context):] = 1
    positions = (context_mask.cumsum(-1) - 1).clamp(min=0)
    prefix = model(ids, attention_mask=context_mask, position_ids=positions, use_cache=True,
                   logits_to_keep=1)
    first = F.log_softmax(prefix.logits[:, -1], dim=-1, dtype=softmax_dtype)  # scores token 0
    owners = [g for g, group in enumerate(continuations) for _ in group]  # context of each row
    flat = [c for group in continuations for c in group]
    longest = max(len(c) for c in flat)
    rest_logprobs = None
    if longest > 1:  # the answers' tokens but their last, each predicting the next
        rows = torch.zeros(len(flat), longest - 1, dtype=torch.long, device=device)
        mask = torch.zeros(len(flat), width + longest - 1, dtype=torch.long, device=device)
        index = torch.tensor(owners, device=device)
        mask[:, :width] = context_mask[index]
        for row, continuation in enumerate(flat):
            rows[row, :len(continuation) - 1] = torch.tensor(continuation[:-1], device=device)
            mask[row, width:width + len(continuation) - 1] = 1
        lengths = torch.tensor([len(contexts[g]) for g in owners], device=device)
        steps = torch.arange(longest - 1, device=device)
        cache = prefix.past_key_values
        cache.batch_select_indices(index)
        logits = model(rows, attention_mask=mask, position_ids=lengths[:, None] + steps,
                       past_key_values=cache, use_cache=False).logits
        rest_logprobs = F.log_softmax(logits, dim=-1, dtype=softmax_dtype)
    scores: list[list[tuple[float, bool]]] = [[] for _ in contexts]
    for row, (owner, continuation) in enumerate(zip(owners, flat, strict=True)):
        logprobs = first[owner].unsqueeze(0)
        if len(continuation) > 1:
            logprobs = torch.cat([logprobs, rest_logprobs[row, :len(continuation) - 1]])
        target = torch.tensor(continuation, device=device)
        greedy = bool((logprobs.argmax(dim=-1) == target).all())
        scores[owner].append((float(logprobs.gather(1, target.unsqueeze(1)).sum()), greedy))
    return scores
