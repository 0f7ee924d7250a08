-- dew point: the temperature at which air of a given temperature and relative humidity
-- becomes saturated, by the Magnus formula with Sonntag's constants (1990; within 0.35 °C
-- from -45 °C to 60 °C).

local A, B = 17.62, 243.12 -- Magnus constants over water, B in °C

local function dew_point_c(t, rh)
    local g = math.log(rh / 100) + A * t / (B + t)
    return B * g / (A - g)
end

local function round(x, decimals)
    local f = 10 ^ decimals
    return math.floor(x * f + 0.5) / f
end

return {
    name = "dew point",
    category = "climate",
    color = "#A6BBCF",
    icon = "font-awesome/fa-tint",
    inputs = 1,
    outputs = 1,
    properties = {
        {name = "temperature", type = "property", default = "payload.temperature", required = true,
         label = "Temperature", help = "message property holding the air temperature"},
        {name = "humidity", type = "property", default = "payload.humidity", required = true,
         label = "Humidity", help = "message property holding the relative humidity (%)"},
        {name = "unit", type = "select", options = {"C", "F"}, default = "C",
         label = "Unit", help = "unit of the temperature read and of the dew point written"},
        {name = "output", type = "property", default = "payload.dewPoint", required = true,
         label = "Output", help = "message property to write the dew point to"},
        {name = "decimals", type = "integer", default = 1, min = 0, max = 6,
         label = "Decimals", help = "decimal places the dew point is rounded to"},
    },
    help = [[
Computes the dew point from a temperature and a relative humidity and writes it to the
message.

### Inputs

: *temperature* (number) : air temperature, in the configured unit.
: *humidity* (number) : relative humidity in percent, above 0 and at most 100.

### Outputs

: *output* (number) : the dew point, in the same unit, rounded to *decimals* places.

### Details

Uses the Magnus formula with Sonntag's constants (a = 17.62, b = 243.12 °C), accurate to
0.35 °C between -45 °C and 60 °C. A message whose temperature or humidity is missing or out
of range is not passed on; the node reports an error that a `catch` node receives.
]],

    input = function(node, msg)
        local cfg = node.config
        local t = util.getMessageProperty(msg, cfg.temperature)
        local rh = util.getMessageProperty(msg, cfg.humidity)
        if type(t) ~= "number" or type(rh) ~= "number" then
            node.error("dew point: temperature and humidity must be numbers", msg)
            return nil
        end
        if rh <= 0 or rh > 100 then
            node.error(string.format("dew point: humidity %g%% is out of range (0, 100]", rh), msg)
            return nil
        end
        if cfg.unit == "F" then t = (t - 32) * 5 / 9 end
        local td = dew_point_c(t, rh)
        if cfg.unit == "F" then td = td * 9 / 5 + 32 end
        td = round(td, cfg.decimals)
        util.setMessageProperty(msg, cfg.output, td)
        node.status({fill = "blue", shape = "dot", text = string.format("%g °%s", td, cfg.unit)})
        return msg
    end,
}
