-- heat index: how hot it feels, from the air temperature and the relative humidity, by
-- the US National Weather Service's method (Rothfusz's regression with its adjustments,
-- and Steadman's simple formula below 80 °F).

local function heat_index_f(t, rh)
    local simple = 0.5 * (t + 61.0 + (t - 68.0) * 1.2 + rh * 0.094)
    if (simple + t) / 2 < 80 then
        return simple
    end
    local hi = -42.379 + 2.04901523 * t + 10.14333127 * rh - 0.22475541 * t * rh
        - 0.00683783 * t * t - 0.05481717 * rh * rh + 0.00122874 * t * t * rh
        + 0.00085282 * t * rh * rh - 0.00000199 * t * t * rh * rh
    if rh < 13 and t >= 80 and t <= 112 then
        hi = hi - ((13 - rh) / 4) * math.sqrt((17 - math.abs(t - 95)) / 17)
    elseif rh > 85 and t >= 80 and t <= 87 then
        hi = hi + ((rh - 85) / 10) * ((87 - t) / 5)
    end
    return hi
end

-- the NWS's bands, in °F
local function level(hi_f)
    if hi_f >= 125 then return "extreme danger"
    elseif hi_f >= 103 then return "danger"
    elseif hi_f >= 90 then return "extreme caution"
    elseif hi_f >= 80 then return "caution"
    end
    return "none"
end

local colours = {none = "green", caution = "yellow", ["extreme caution"] = "yellow",
                 danger = "red", ["extreme danger"] = "red"}

return {
    name = "heat index",
    category = "climate",
    color = "#F3B567",
    icon = "font-awesome/fa-thermometer-three-quarters",
    inputs = 1,
    outputs = 1,
    properties = {
        {name = "temperature", type = "property", default = "payload.temperature", required = true,
         label = "Temperature", help = "message property holding the air temperature"},
        {name = "humidity", type = "property", default = "payload.humidity", required = true,
         label = "Humidity", help = "message property holding the relative humidity (%)"},
        {name = "unit", type = "select", options = {"C", "F"}, default = "C",
         label = "Unit", help = "unit of the temperature read and of the heat index written"},
        {name = "output", type = "property", default = "payload.heatIndex", required = true,
         label = "Output", help = "message property to write the heat index to"},
        {name = "level", type = "property", default = "",
         label = "Level", help = "message property for the NWS band (empty: none)"},
        {name = "decimals", type = "integer", default = 1, min = 0, max = 6,
         label = "Decimals", help = "decimal places the heat index is rounded to"},
    },
    help = [[
Computes the heat index ("feels like" temperature) from a temperature and a relative
humidity, as the US National Weather Service does.

### Inputs

: *temperature* (number) : air temperature, in the configured unit.
: *humidity* (number) : relative humidity in percent, 0 to 100.

### Outputs

: *output* (number) : the heat index, in the same unit, rounded to *decimals* places.
: *level* (string) : if set, the NWS band: `none`, `caution`, `extreme caution`,
  `danger` or `extreme danger`.

### Details

Below about 80 °F (27 °C) Steadman's simple formula is used; above, Rothfusz's regression
with the NWS's adjustments for very dry and very humid air. A message whose temperature or
humidity is missing or out of range is not passed on; the node reports an error that a
`catch` node receives.
]],

    input = function(node, msg)
        local cfg = node.config
        local t = util.getMessageProperty(msg, cfg.temperature)
        local rh = util.getMessageProperty(msg, cfg.humidity)
        if type(t) ~= "number" or type(rh) ~= "number" then
            node.error("heat index: temperature and humidity must be numbers", msg)
            return nil
        end
        if rh < 0 or rh > 100 then
            node.error(string.format("heat index: humidity %g%% is out of range [0, 100]", rh), msg)
            return nil
        end
        local tf = cfg.unit == "C" and t * 9 / 5 + 32 or t
        local hf = heat_index_f(tf, rh)
        local out = cfg.unit == "C" and (hf - 32) * 5 / 9 or hf
        local f = 10 ^ cfg.decimals
        out = math.floor(out * f + 0.5) / f
        util.setMessageProperty(msg, cfg.output, out)
        local band = level(hf)
        if cfg.level ~= "" then
            util.setMessageProperty(msg, cfg.level, band)
        end
        node.status({fill = colours[band], shape = "dot",
                     text = string.format("%g °%s (%s)", out, cfg.unit, band)})
        return msg
    end,
}
