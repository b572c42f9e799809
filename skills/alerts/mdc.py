"""Alarm words for MDC event and device codes (ISO/IEEE 11073-10101), in English and Korean.

An unknown code is shown as the code itself: a nurse can still look it up, and nothing is guessed.
"""

from __future__ import annotations

EVENTS: dict[str, tuple[str, str]] = {
    "MDC_EVT_HI": ("High limit", "상한 초과"),
    "MDC_EVT_LO": ("Low limit", "하한 미만"),
    "MDC_EVT_HI_GT_LIM": ("Above high limit", "상한 초과"),
    "MDC_EVT_LO_LT_LIM": ("Below low limit", "하한 미만"),
    "MDC_EVT_ALARM": ("Alarm", "알람"),
    "MDC_EVT_ASYSTOLE": ("Asystole", "무수축"),
    "MDC_EVT_ECG_ASYSTOLE": ("Asystole", "무수축"),
    "MDC_EVT_ECG_V_FIB": ("Ventricular fibrillation", "심실세동"),
    "MDC_EVT_ECG_V_TACHY": ("Ventricular tachycardia", "심실빈맥"),
    "MDC_EVT_ECG_V_P_C_RUN": ("Run of PVCs", "연속 심실조기수축"),
    "MDC_EVT_ECG_BRADY_EXTREME": ("Extreme bradycardia", "극심한 서맥"),
    "MDC_EVT_ECG_TACHY_EXTREME": ("Extreme tachycardia", "극심한 빈맥"),
    "MDC_EVT_APNEA": ("Apnoea", "무호흡"),
    "MDC_EVT_DESAT": ("Desaturation", "산소포화도 저하"),
    "MDC_EVT_LEAD_OFF": ("ECG lead off", "심전도 리드 분리"),
    "MDC_EVT_ECG_LEAD_OFF": ("ECG lead off", "심전도 리드 분리"),
    "MDC_EVT_SENSOR_DISCONN": ("Sensor disconnected", "센서 분리"),
    "MDC_EVT_BATT_LO": ("Battery low", "배터리 부족"),
    "MDC_EVT_BATT_DEPL": ("Battery depleted", "배터리 방전"),
    "MDC_EVT_FLUID_LINE_OCCL": ("Line occlusion", "수액 라인 폐색"),
    "MDC_EVT_FLUID_LINE_AIR": ("Air in line", "라인 내 공기"),
    "MDC_EVT_INFUS_COMPLETE": ("Infusion complete", "주입 완료"),
    "MDC_EVT_INFUS_NEAR_END": ("Infusion near end", "주입 완료 임박"),
    "MDC_EVT_DOOR_OPEN": ("Pump door open", "펌프 도어 열림"),
    "MDC_EVT_COMM_STATUS_ERR": ("Device communication lost", "장비 통신 끊김"),
    "MDC_EVT_STAT_WATCHDOG": ("Gateway heartbeat", "게이트웨이 신호"),
}

DEVICES: dict[str, tuple[str, str]] = {
    "MDC_DEV_PUMP_INFUS_MDS": ("Infusion pump", "수액 펌프"),
    "MDC_DEV_PUMP_INFUS_VMD": ("Infusion pump", "수액 펌프"),
    "MDC_DEV_ANALY_SAT_O2_MDS": ("Pulse oximeter", "산소포화도 측정기"),
    "MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS": ("Patient monitor", "환자 감시 장치"),
    "MDC_DEV_SYS_PT_VENT_MDS": ("Ventilator", "인공호흡기"),
}


def _language(locale: str) -> int:
    return 1 if locale.lower().startswith("ko") else 0


def event_words(code: str, device_text: str, locale: str) -> str:
    """The alarm in words: the table's text, else what the device said, else the code itself."""
    known = EVENTS.get(code)
    if known is not None and code != "MDC_EVT_ALARM":
        return known[_language(locale)]
    return device_text or code


def device_words(code: str, locale: str) -> str:
    """A device type in words, or the device's own identifier."""
    known = DEVICES.get(code)
    return known[_language(locale)] if known is not None else code
