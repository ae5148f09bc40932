import math

import pytest
import torch
import torch.nn.functional as F

from simlm_ir.modeling.losses import (
    contrastive_logits,
    contrastive_loss,
    distillation_loss,
    group_scores,
    listwise_rerank_loss,
)

NEG = float("-inf")


def unit(*rows):
    return F.normalize(torch.tensor(rows, dtype=torch.float32), dim=-1)


def test_full_contrastive_logits_by_hand():
    # 2 queries, groups of 2 passages (positive first)
    q = unit([1, 0], [0, 1])
    p = unit([1, 1], [0, 1], [1, 0], [1, 1])
    logits, targets = contrastive_logits(q, p)
    assert targets.tolist() == [0, 2]
    s = 1 / math.sqrt(2)
    expected = torch.tensor([
        # q·p (4)          pos·q (2)   q·q (2)    pos·pos (2)
        [s, 0, 1, s,       NEG, s,     NEG, 0,    NEG, s],
        [s, 1, 0, s,       1, NEG,     0, NEG,    s, NEG],
    ])
    assert torch.allclose(logits, expected)
    plain, _ = contrastive_logits(q, p, full=False)
    assert torch.allclose(plain, expected[:, :4])


def test_contrastive_loss_uses_temperature():
    q = unit([1, 0], [0, 1])
    p = unit([1, 0], [0, 1], [0, 1], [1, 1])
    logits, targets = contrastive_logits(q, p)
    for tau in (0.02, 1.0):
        assert contrastive_loss(q, p, tau).item() == pytest.approx(F.cross_entropy(logits / tau, targets).item())
    # the positive is the best match for both queries, so a sharper temperature lowers the loss
    assert contrastive_loss(q, p, 0.02) < contrastive_loss(q, p, 1.0)


def test_passages_must_be_a_multiple_of_queries():
    with pytest.raises(ValueError, match="multiple"):
        contrastive_logits(unit([1, 0], [0, 1]), unit([1, 0], [0, 1], [1, 1]))


def test_distillation_is_kl_with_log_targets_plus_weighted_contrastive():
    q = unit([1, 0], [0, 1])
    p = unit([1, 0], [0, 1], [0, 1], [1, 1])
    teacher = torch.tensor([[3.0, -1.0], [2.0, 0.5]])
    tau, alpha = 0.02, 0.2
    student = torch.log_softmax(group_scores(q, p) / tau, -1)
    target = torch.log_softmax(teacher, -1)
    kl = (target.exp() * (target - student)).sum(-1).mean()
    want = kl + alpha * contrastive_loss(q, p, tau)
    assert distillation_loss(q, p, teacher, tau, alpha).item() == pytest.approx(want.item(), rel=1e-5)
    assert group_scores(q, p).flatten().tolist() == pytest.approx([1.0, 0.0, 1.0, 1 / math.sqrt(2)], abs=1e-6)


def test_listwise_rerank_loss_targets_column_zero():
    good = torch.tensor([[5.0, 0.0, 0.0]])
    bad = torch.tensor([[0.0, 5.0, 0.0]])
    assert listwise_rerank_loss(good) < listwise_rerank_loss(bad)


def test_rdrop_loss_is_the_symmetric_kl_by_hand():
    from simlm_ir.modeling.losses import rdrop_loss

    a = torch.tensor([[2.0, 0.0, -1.0]])
    b = torch.tensor([[0.0, 1.0, 0.5]])
    pa, pb = F.softmax(a, -1)[0], F.softmax(b, -1)[0]
    kl_ab = sum(float(pa[i] * math.log(pa[i] / pb[i])) for i in range(3))
    kl_ba = sum(float(pb[i] * math.log(pb[i] / pa[i])) for i in range(3))
    assert rdrop_loss(a, b).item() == pytest.approx(0.5 * (kl_ab + kl_ba), rel=1e-5)
    assert rdrop_loss(a, a.clone()).item() == 0.0


def asymmetric_batch(B=2, G=3, d=4, seed=0):
    """B queries and B*G passages with B, G and d all different, so no transposed or interleaved view
    of the tensors can pass for the right one."""
    g = torch.Generator().manual_seed(seed)
    return (F.normalize(torch.randn(B, d, generator=g), dim=-1),
            F.normalize(torch.randn(B * G, d, generator=g), dim=-1))


def test_group_scores_are_each_query_against_its_own_contiguous_group():
    q, p = asymmetric_batch()
    B, G = 2, 3
    # plain loops: query b's group is rows b*G .. b*G+G-1
    expected = [float(sum(q[b, k] * p[b * G + j, k] for k in range(q.shape[1]))) for b in range(B) for j in range(G)]
    scores = group_scores(q, p)
    assert scores.shape == (B, G)
    assert scores.flatten().tolist() == pytest.approx(expected, abs=1e-6)


def test_distillation_loss_by_hand_on_asymmetric_groups():
    q, p = asymmetric_batch(B=3, G=2, d=5, seed=1)
    teacher = torch.tensor([[1.5, -0.5], [0.0, 2.0], [0.3, 0.1]])
    tau, alpha = 0.05, 0.3  # not the defaults, so a loss that ignores its arguments fails
    kl = 0.0
    for b in range(3):
        s = [float(q[b] @ p[b * 2 + j]) / tau for j in range(2)]
        log_z = math.log(sum(math.exp(x) for x in s))
        t = teacher[b].tolist()
        log_zt = math.log(sum(math.exp(x) for x in t))
        kl += sum(math.exp(tj - log_zt) * ((tj - log_zt) - (sj - log_z)) for tj, sj in zip(t, s))
    want = kl / 3 + alpha * contrastive_loss(q, p, tau).item()
    assert distillation_loss(q, p, teacher, tau, alpha).item() == pytest.approx(want, rel=1e-5)
    # the teacher's order within a group matters: reversing it changes the loss
    assert distillation_loss(q, p, teacher.flip(1), tau, alpha).item() != pytest.approx(want, rel=1e-3)


def test_contrastive_loss_by_hand_with_more_queries_than_dims():
    """B (3) != d (2) != G (2); cross-entropy over the full logits row written out by hand."""
    q = unit([1, 0], [0, 1], [1, 1])
    p = unit([1, 0], [1, 1], [0, 1], [1, 0], [1, 1], [1, -1])
    tau = 0.1
    B, G = 3, 2

    def dot(a, b):
        return float(a @ b)

    loss_full = loss_plain = 0.0
    for i in range(B):
        pos = p[i * G]
        row = [dot(q[i], p[j]) for j in range(B * G)]
        plain = list(row)
        row += [dot(pos, q[j]) for j in range(B) if j != i]  # the masked diagonal drops out of the softmax
        row += [dot(q[i], q[j]) for j in range(B) if j != i]
        row += [dot(pos, p[j * G]) for j in range(B) if j != i]
        for r, name in ((row, "full"), (plain, "plain")):
            ce = math.log(sum(math.exp(x / tau) for x in r)) - r[i * G] / tau
            if name == "full":
                loss_full += ce / B
            else:
                loss_plain += ce / B
    assert contrastive_loss(q, p, tau).item() == pytest.approx(loss_full, rel=1e-5)
    assert contrastive_loss(q, p, tau, full=False).item() == pytest.approx(loss_plain, rel=1e-5)
    assert loss_full != pytest.approx(loss_plain, rel=1e-3)


def test_listwise_rerank_loss_by_hand():
    logits = torch.tensor([[2.0, 1.0, -1.0], [0.5, 3.0, 0.0]])
    want = sum(math.log(sum(math.exp(x) for x in row)) - row[0] for row in logits.tolist()) / 2
    assert listwise_rerank_loss(logits).item() == pytest.approx(want, rel=1e-6)
