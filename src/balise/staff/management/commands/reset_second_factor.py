from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from balise.staff.actions import reset_second_factor


class Command(BaseCommand):
    help = ("Remove a staff member's second factor (authenticator and recovery codes), e.g. after a lost "
            "phone: she sets up a new one at her next login.")

    def add_arguments(self, parser):
        parser.add_argument("username")

    def handle(self, *args, username, **options):
        User = get_user_model()
        try:
            user = User.objects.get(**{User.USERNAME_FIELD: username})
        except User.DoesNotExist:
            raise CommandError(f"no user named {username!r}") from None
        removed = reset_second_factor(user)
        self.stdout.write(f"{username}: {removed} device(s) removed; a new second factor is set up at the next login.")
