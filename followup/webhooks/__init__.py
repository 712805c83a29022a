"""Outbound webhooks for the follow-up loop's events (see ``service.py`` for the design).

Any event kind of :mod:`integrity.catalogue` can be subscribed to; a new kind needs no
change here.
"""

from followup.webhooks.model import Delivery, DeliveryStatus, Endpoint, EndpointState
from followup.webhooks.service import WebhookService

__all__ = ["Delivery", "DeliveryStatus", "Endpoint", "EndpointState", "WebhookService"]
