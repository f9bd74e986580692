"""`{% share_links_for model as share %}`: the model page's share-links card, without
adding to the page view's context (templates/models_app/_share_links.html)."""

from __future__ import annotations

from django import template

from models_app import share_links

register = template.Library()


@register.simple_tag(takes_context=True)
def share_links_for(context, model) -> dict:
    user = context["request"].user
    return {
        "may_share": share_links.may_share(user, model),
        "links": list(share_links.links_of(model)[:20]),
        "choices": share_links.LIFETIME_CHOICES,
        "default": int(share_links.DEFAULT_LIFETIME.total_seconds()),
    }
