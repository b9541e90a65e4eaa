"""Activities of the order example. They stand in for a payment gateway and a warehouse."""

from __future__ import annotations

from typing import Any

from rustyflower import ActivityRegistry, current_call

registry = ActivityRegistry()


class GatewayUnavailable(Exception):
    """The payment gateway did not answer; worth retrying."""


class CardDeclined(Exception):
    """The bank said no; retrying will not help."""


@registry.activity
def charge_card(order: dict[str, Any]) -> dict[str, Any]:
    call = current_call()
    # The first attempt meets a busy gateway, to show a retry in the timeline.
    if call.attempt == 1:
        raise GatewayUnavailable("gateway timed out")
    if order["amount"] <= 0:
        raise CardDeclined(f"cannot charge {order['amount']}")
    return {
        "charge_id": f"ch_{order['order_id']}",
        "amount": order["amount"],
        "idempotency_key": call.idempotency_key,
    }


@registry.activity
def ship_order(order: dict[str, Any]) -> dict[str, Any]:
    return {"tracking": f"TRK-{order['order_id']}", "parcels": len(order["items"])}


@registry.activity
def send_invoice(order: dict[str, Any]) -> dict[str, Any]:
    return {"invoice": f"INV-{order['order_id']}", "amount": order["amount"]}


@registry.activity
def refund_payment(payload: dict[str, Any]) -> dict[str, Any]:
    return {"refunded": payload["payment"]["amount"]}
