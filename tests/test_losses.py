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
