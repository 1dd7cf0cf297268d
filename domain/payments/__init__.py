"""The payments bounded context: the :class:`Payment` aggregate and its values."""

from domain.payments.aggregate import Payment, PaymentFact
from domain.payments.values import (
    Anomaly,
    AnomalyKind,
    PaymentStatus,
    PaymentView,
    check_gateway_event,
)

__all__ = [
    "Anomaly",
    "AnomalyKind",
    "Payment",
    "PaymentFact",
    "PaymentStatus",
    "PaymentView",
    "check_gateway_event",
]
