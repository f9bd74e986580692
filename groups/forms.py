"""Forms of the accounts pages; UserCreateForm also checks the users API's input."""

from __future__ import annotations

from django import forms
from django.contrib.auth import get_user_model
from django.utils.translation import gettext_lazy as _

from groups import services
from groups.models import Group, Membership
from groups.timezones import validate_zone


class GroupForm(forms.ModelForm):
    class Meta:
        model = Group
        fields = ["name", "description"]
        widgets = {
            "name": forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
            "description": forms.Textarea(attrs={"rows": 3}),
        }
        labels = {"name": _("Name"), "description": _("Description")}
        help_texts = {"name": _("Lower-case letters, digits, '-' and '_'; up to 32 characters.")}


class MemberForm(forms.Form):
    username = forms.CharField(
        max_length=150,
        label=_("Username"),
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )
    role = forms.ChoiceField(label=_("Role"), choices=Membership.Role.choices, initial=Membership.Role.MEMBER)

    def clean_username(self):
        try:
            return services.member_user(self.cleaned_data["username"].strip())
        except services.PeopleError as error:
            raise forms.ValidationError(str(error)) from None


class RefreshTokenForm(forms.Form):
    force = forms.BooleanField(
        required=False,
        label=_("Replace it even if it is still valid"),
        help_text=_("The current token stops working at once: update its callers."),
    )


class ApiTokenForm(forms.Form):
    name = forms.CharField(
        max_length=100,
        required=False,
        label=_("Name"),
        help_text=_("What this token is for, e.g. 'laptop notebook'."),
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
    )


class UserCreateForm(forms.ModelForm):
    """A new account: no password here, the user sets it through a one-time link."""

    send_email = forms.BooleanField(
        required=False,
        label=_("Also e-mail the link to the user"),
        help_text=_("Needs an e-mail address. You see the link either way."),
    )

    class Meta:
        model = get_user_model()
        fields = ["username", "email", "is_staff"]
        labels = {"username": _("Username"), "email": _("E-mail"), "is_staff": _("Admin")}
        help_texts = {
            "username": _("What they log in with: letters, digits and @/./+/-/_ only, up to 150 characters."),
            "email": _("Optional."),
            "is_staff": _("Admins see every group and manage people, groups and tokens."),
        }
        widgets = {"username": forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"})}

    def clean_username(self):
        username = self.cleaned_data["username"]
        if get_user_model().objects.filter(username__iexact=username).exists():
            raise forms.ValidationError(
                _("A user named '%(username)s' already exists (user names are compared ignoring case)."),
                params={"username": username},
            )
        return username

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("send_email") and not cleaned.get("email"):
            self.add_error(
                "email", _("Give an e-mail address to send the link to, or do not ask to send it.")
            )
        return cleaned


class PersonGroupForm(forms.Form):
    """Add a user to a Neomaril group (or change their role there), from their page."""

    group = forms.ModelChoiceField(
        label=_("Group"), queryset=Group.objects.all(), to_field_name="name", empty_label=None
    )
    role = forms.ChoiceField(label=_("Role"), choices=Membership.Role.choices, initial=Membership.Role.MEMBER)


class TimeZoneForm(forms.Form):
    """The zone the pages show times in (groups.models.Profile); empty: the browser's."""

    time_zone = forms.CharField(
        required=False,
        max_length=64,
        label=_("Time zone"),
        help_text=_("A name from the list, such as America/Sao_Paulo. Empty: your browser's time zone."),
        validators=[validate_zone],
        widget=forms.TextInput(attrs={"list": "time-zones", "autocomplete": "off", "spellcheck": "false"}),
    )
