"""Forms of the accounts pages; UserCreateForm and UserResetForm also check the users
API's input. DefaultBooleanField is the strict true/false of every form that an API
shares with a page (uploads, training, monitoring, accounts)."""

from __future__ import annotations

import unicodedata

from django import forms
from django.contrib.auth import get_user_model
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from groups import services
from groups.models import GROUP_NAME_TAKEN, NOT_A_ROLE, Group, Membership
from groups.timezones import validate_zone

# Characters that reorder the text around them: "invoice<U+202E>lmth.exe" shows as
# "invoiceexe.html". Refused in file names, like control characters (names refuse them
# with every other format character, below).
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f")

# Unicode's control (Cc) and format (Cf) characters: nothing a name needs to be read.
REFUSED_IN_NAMES = frozenset({"Cc", "Cf"})


def refuse_control_characters(value: str) -> None:
    """Names are shown in pages, logs and terminals, where an escape sequence acts, a
    direction mark disguises what follows, and an invisible character (a zero-width
    space, a joiner, a soft hyphen, a tag) makes a name look empty or like another.

    Every format character (Cf) is refused, the direction marks among them, and also the
    joiners of emoji sequences and of Persian or Indic spelling: a name is for telling
    things apart, it stays readable without them, and one rule is simpler to state than
    a list of the harmless uses. The names of models (uploaded or promoted), experiments,
    runs and API tokens are checked here; group and user names take only letters, digits
    and a few signs, which holds no control or format character."""
    for character in value:
        if unicodedata.category(character) in REFUSED_IN_NAMES:
            raise forms.ValidationError(
                _("A name cannot hold control characters (%(character)s)."),
                params={"character": character.encode("unicode_escape").decode("ascii")},
            )


class Checkbox(forms.CheckboxInput):
    """A checkbox whose field is on when the request leaves it out.

    A browser sends nothing for an unchecked box, which an API client also does when
    it wants the default. So a hidden "false" goes first: an unchecked box still sends
    "false", a checked one sends "false" then "true", and the last value wins.
    """

    def __init__(self, attrs=None):
        super().__init__({"value": "true", **(attrs or {})})

    def value_from_datadict(self, data, files, name):
        values = data.getlist(name) if hasattr(data, "getlist") else [data.get(name)]
        values = [value for value in values if value is not None]
        return values[-1] if values else None

    def value_omitted_from_data(self, data, files, name):
        return name not in data

    def render(self, name, value, attrs=None, renderer=None):
        hidden = format_html('<input type="hidden" name="{}" value="false">', name)
        return hidden + super().render(name, value, attrs, renderer)


class DefaultBooleanField(forms.Field):
    """true/false (also 1/0, on/off, yes/no); `default` when the request leaves it out.

    Unlike forms.BooleanField, a value that is neither is refused, not taken as true:
    a JSON "0" or "no" must not make an admin. A page's checked box posts "true" (or
    "on", from a page rendered before the hidden "false"), an unchecked one "false" or
    nothing.
    """

    widget = Checkbox
    default_error_messages = {"invalid": _("Send true or false, not %(value)r.")}
    _TRUE = {"true", "1", "on", "yes"}
    _FALSE = {"false", "0", "off", "no"}

    def __init__(self, *, default: bool, **kwargs):
        kwargs.setdefault("required", False)
        kwargs.setdefault("initial", default)
        super().__init__(**kwargs)
        self.default = default

    def to_python(self, value):
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower() if value is not None else ""
        if not text:
            return self.default
        if text in self._TRUE:
            return True
        if text in self._FALSE:
            return False
        raise forms.ValidationError(self.error_messages["invalid"], code="invalid", params={"value": value})

    def prepare_value(self, value):
        try:
            return self.to_python(value)
        except forms.ValidationError:
            return value


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
        # Django's own ("Group with this Name already exists.") names the model and field in
        # English whatever the page's language.
        error_messages = {"name": {"unique": GROUP_NAME_TAKEN}}


class StorageQuotaForm(forms.ModelForm):
    """An admin's change of a group's storage quota (groups.storage)."""

    class Meta:
        model = Group
        fields = ["storage_quota_mb"]
        labels = {"storage_quota_mb": _("Storage quota (MB)")}
        help_texts = {
            "storage_quota_mb": _("Empty: the server's default (NEOMARIL_GROUP_STORAGE_MB); 0: no limit.")
        }


class MemberForm(forms.Form):
    username = forms.CharField(
        max_length=150,
        label=_("Username"),
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )
    role = forms.ChoiceField(
        label=_("Role"),
        choices=Membership.Role.choices,
        initial=Membership.Role.MEMBER,
        error_messages={"invalid_choice": NOT_A_ROLE},
    )

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
        validators=[refuse_control_characters],
        label=_("Name"),
        help_text=_("What this token is for, e.g. 'laptop notebook'."),
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
    )


class UserCreateForm(forms.ModelForm):
    """A new account: no password here, the user sets it through a one-time link."""

    is_staff = DefaultBooleanField(
        default=False,
        label=_("Admin"),
        help_text=_("Admins see every group and manage people, groups and tokens."),
    )
    send_email = DefaultBooleanField(
        default=False,
        label=_("Also e-mail the link to the user"),
        help_text=_("Needs an e-mail address. You see the link either way."),
    )

    class Meta:
        model = get_user_model()
        fields = ["username", "email", "is_staff"]
        labels = {"username": _("Username"), "email": _("E-mail")}
        help_texts = {
            "username": _("What they log in with: letters, digits and @/./+/-/_ only, up to 150 characters."),
            "email": _("Optional."),
        }
        widgets = {"username": forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"})}

    def clean_username(self):
        # NFKC, as Django's login form treats what is typed: the name stored is the one
        # that logs in ('ｆｕｌｌ' is kept as 'full').
        username = get_user_model().normalize_username(self.cleaned_data["username"])
        if username in (".", ".."):
            raise forms.ValidationError(
                _("'%(username)s' cannot be a user name: a page's address could not name it."),
                params={"username": username},
            )
        existing = services.find_user(username)
        if existing is not None and existing.get_username() == username:
            raise forms.ValidationError(
                _("A user named '%(username)s' already exists (user names are compared ignoring case)."),
                params={"username": username},
            )
        if existing is not None:  # say which account: 'SS' alone would not explain 'ß'
            raise forms.ValidationError(
                _(
                    "A user named '%(existing)s' already exists, and user names are compared ignoring "
                    "case: '%(username)s' is the same name. Choose another."
                ),
                params={"username": username, "existing": existing.get_username()},
            )
        return username

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("send_email") and not cleaned.get("email"):
            self.add_error(
                "email", _("Give an e-mail address to send the link to, or do not ask to send it.")
            )
        return cleaned


class UserResetForm(forms.Form):
    """A new set-password link for an account (the users API's reset)."""

    send_email = DefaultBooleanField(default=False, label=_("Also e-mail the link to the user"))


class PersonGroupForm(forms.Form):
    """Add a user to a Neomaril group (or change their role there), from their page."""

    group = forms.ModelChoiceField(
        label=_("Group"), queryset=Group.objects.all(), to_field_name="name", empty_label=None
    )
    role = forms.ChoiceField(
        label=_("Role"),
        choices=Membership.Role.choices,
        initial=Membership.Role.MEMBER,
        error_messages={"invalid_choice": NOT_A_ROLE},
    )


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
