"""Phone numbers on the console's pages as a French worker dials them (06 12 34 56 11);
the `tel:` links keep the stored international form."""

from django import template

from balise.people.phones import readable_phone

register = template.Library()
register.filter("readable_phone", readable_phone)
