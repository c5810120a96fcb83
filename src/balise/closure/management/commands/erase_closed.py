from django.core.management.base import BaseCommand

from balise.closure.actions import erase_due


class Command(BaseCommand):
    help = "Erase the personal data of closed files past their association's retention period."

    def handle(self, *args, **options):
        result = erase_due()
        self.stdout.write(f"erased {result.erased}, held by a legal hold {result.held}, "
                          f"waiting for messages {result.waiting}")
