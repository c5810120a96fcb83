from django import template

from balise.closure.models import FileClosure, Reason

register = template.Library()


@register.inclusion_tag("closure/_close.html", takes_context=True)
def closure_section(context):
    """The end-of-protection part of her file (console/person.html)."""
    person = context["person"]
    return {"person": person, "closure": FileClosure.objects.filter(person=person).first(),
            "can_act": context.get("can_act"), "closure_reasons": Reason.choices, "csrf_token": context.get("csrf_token")}
