"""Forms of the accounts pages."""

from __future__ import annotations

from django import forms
from django.contrib.auth import get_user_model

from groups.models import Group, Membership


class GroupForm(forms.ModelForm):
    class Meta:
        model = Group
        fields = ["name", "description"]
        widgets = {
            "name": forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
            "description": forms.Textarea(attrs={"rows": 3}),
        }
        help_texts = {"name": "Lower-case letters, digits, '-' and '_'; up to 32 characters."}


class MemberForm(forms.Form):
    username = forms.CharField(
        max_length=150, widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"})
    )
    role = forms.ChoiceField(choices=Membership.Role.choices, initial=Membership.Role.MEMBER)

    def clean_username(self):
        username = self.cleaned_data["username"].strip()
        user = get_user_model().objects.filter(username=username, is_active=True).first()
        if user is None:
            raise forms.ValidationError(
                f"No active user named '{username}'. An admin creates accounts in the admin pages."
            )
        return user


class RefreshTokenForm(forms.Form):
    force = forms.BooleanField(
        required=False,
        label="Replace it even if it is still valid",
        help_text="The current token stops working at once: update its callers.",
    )


class ApiTokenForm(forms.Form):
    name = forms.CharField(
        max_length=100,
        required=False,
        help_text="What this token is for, e.g. 'laptop notebook'.",
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
    )
