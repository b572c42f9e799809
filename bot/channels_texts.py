"""What the channel-link commands say, in English and Korean."""

from __future__ import annotations

TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "usage_link": "Write `link unit 7W` in the channel that should receive unit 7W's posts.",
        "usage_unlink": "Write `unlink unit 7W` to stop sending unit 7W's posts to its channel.",
        "not_channel": "Please write this in a team channel: units are linked to channels, not to chats.",
        "unknown_unit": "I don't know unit {unit}. Check the unit id in the hospital directory.",
        "linked": "Linked: posts for unit {unit} now go to this channel.",
        "relinked": "Linked: posts for unit {unit} now go to this channel instead of the one it was linked to before.",
        "unlinked": "Unlinked: unit {unit} no longer posts here; its posts go to the fallback channel until relinked.",
        "not_linked": "Unit {unit} is not linked to any channel.",
    },
    "ko": {
        "usage_link": "7W 병동의 알림을 받을 채널에서 `link unit 7W`라고 입력하세요.",
        "usage_unlink": "7W 병동 알림을 이 채널로 보내지 않으려면 `unlink unit 7W`라고 입력하세요.",
        "not_channel": "팀 채널에서 입력해 주세요. 병동은 채팅이 아니라 채널에 연결됩니다.",
        "unknown_unit": "{unit} 병동을 찾을 수 없습니다. 병원 디렉터리의 병동 ID를 확인하세요.",
        "linked": "연결됨: 이제 {unit} 병동 알림이 이 채널로 전송됩니다.",
        "relinked": "연결됨: {unit} 병동 알림이 이전 채널 대신 이 채널로 전송됩니다.",
        "unlinked": "연결 해제됨: {unit} 병동 알림은 다시 연결될 때까지 대체 채널로 전송됩니다.",
        "not_linked": "{unit} 병동은 어느 채널에도 연결되어 있지 않습니다.",
    },
}
