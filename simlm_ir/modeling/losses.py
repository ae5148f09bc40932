"""Fine-tuning losses: SimLM's full contrastive loss, cross-encoder distillation (KL), and the
re-ranker's listwise cross-entropy with R-Drop.

Shapes: ``q`` is (B, d) query vectors; ``p`` is (B*G, d) passage vectors where query ``i``'s group
is rows ``i*G .. i*G+G-1`` and row ``i*G`` is its positive. Vectors are L2-normalised, so dot
products are cosines; scores are divided by the temperature ``tau``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

TAU = 0.02
KD_CONTRASTIVE_WEIGHT = 0.2


def contrastive_logits(q: torch.Tensor, p: torch.Tensor, full: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (B, B*G [+ 3B]) and the target column of each query (its positive).

    Besides query-vs-every-passage in the batch (in-batch and hard negatives), the *full* loss
    adds, as SimLM does, each query's positive vs the other queries, the query vs the other
    queries, and the positive vs the other positives, with the diagonals (self pairs) masked.
    """
    B = q.shape[0]
    if p.shape[0] % B:
        raise ValueError(f"{p.shape[0]} passages for {B} queries: expected a multiple")
    G = p.shape[0] // B
    targets = torch.arange(B, device=q.device) * G
    qp = q @ p.T
    if not full:
        return qp, targets
    pos = p[targets]
    eye = torch.eye(B, dtype=torch.bool, device=q.device)
    masked = float("-inf")
    pos_q = (pos @ q.T).masked_fill(eye, masked)  # row i: positive_i vs query_j, j != i
    q_q = (q @ q.T).masked_fill(eye, masked)
    pos_pos = (pos @ pos.T).masked_fill(eye, masked)
    return torch.cat([qp, pos_q, q_q, pos_pos], dim=1), targets


def contrastive_loss(q: torch.Tensor, p: torch.Tensor, tau: float = TAU, full: bool = True) -> torch.Tensor:
    logits, targets = contrastive_logits(q, p, full)
    return F.cross_entropy(logits / tau, targets)


def group_scores(q: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """(B, G) scores of each query against its own group only."""
    B = q.shape[0]
    return torch.einsum("bd,bgd->bg", q, p.view(B, -1, q.shape[1]))


def distillation_loss(q: torch.Tensor, p: torch.Tensor, teacher: torch.Tensor, tau: float = TAU,
                      alpha: float = KD_CONTRASTIVE_WEIGHT) -> torch.Tensor:
    """KL(teacher || student) over each query's group, plus ``alpha`` x the contrastive loss.

    Student scores are scaled by 1/tau, the teacher's are its raw logits; both are log-softmaxed
    over the group and compared with ``log_target=True``.
    """
    student = F.log_softmax(group_scores(q, p) / tau, dim=-1)
    target = F.log_softmax(teacher.float(), dim=-1)
    kl = F.kl_div(student, target, reduction="batchmean", log_target=True)
    return kl + alpha * contrastive_loss(q, p, tau)


def listwise_rerank_loss(logits: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of (B, G) cross-encoder logits with the positive in column 0."""
    return F.cross_entropy(logits.float(), torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device))


def rdrop_loss(logits1: torch.Tensor, logits2: torch.Tensor) -> torch.Tensor:
    """R-Drop (Liang et al. 2021) over (B, G) logits of two dropout passes of the same inputs:
    the symmetric KL ``(KL(p1 || p2) + KL(p2 || p1)) / 2`` between the two group distributions, as
    the authors' re-ranker adds it. Zero when the passes agree (no dropout)."""
    lp1, lp2 = F.log_softmax(logits1.float(), dim=-1), F.log_softmax(logits2.float(), dim=-1)
    return 0.5 * (F.kl_div(lp1, lp2, reduction="batchmean", log_target=True)
                  + F.kl_div(lp2, lp1, reduction="batchmean", log_target=True))
